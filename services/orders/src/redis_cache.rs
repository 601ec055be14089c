//! [`OrderCache`] on Redis: `order:{id}` → the order's JSON, with a TTL, shared by
//! every orders and worker process (so the worker's PAID is seen at once
//! everywhere). Redis trouble never fails a request: reads fall back to the
//! database, writes are skipped (counted in `order_cache_errors_total`, logged
//! at most every 10 s), and the cache is used again once Redis answers.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use uuid::Uuid;

use orderly_redis::RedisTls;

use crate::Order;
use crate::cache::OrderCache;
use crate::redis_gate::{Gate, bounded, connect_lazy, ping};

/// Ids whose cached copy may be stale after a failed write, remembered until
/// Redis answers again (then deleted). Bounded: beyond it the TTL has to do.
const MAX_PENDING_REMOVALS: usize = 10_000;

pub struct RedisCache {
    conn: ConnectionManager,
    ttl: Duration,
    gate: Gate,
    pending_removals: Mutex<HashSet<Uuid>>,
}

/// The contract's key (shared with the old system's tools, e.g. `redis-cli TTL order:<id>`).
pub fn key(id: Uuid) -> String {
    format!("order:{id}")
}

impl RedisCache {
    /// Does not touch Redis yet: the first request connects (so a Redis outage at
    /// start does not stop orderly from starting).
    pub fn new(url: &str, tls: &RedisTls, ttl: Duration) -> Result<Self, String> {
        Ok(Self {
            conn: connect_lazy(url, tls)?,
            ttl,
            gate: Gate::new("order cache", "order_cache_errors_total"),
            pending_removals: Mutex::new(HashSet::new()),
        })
    }

    /// `PING` for `/ready`.
    pub async fn ping(&self) -> Result<(), String> {
        ping(&self.conn).await
    }

    fn remember_stale(&self, id: Uuid) {
        if let Ok(mut pending) = self.pending_removals.lock()
            && pending.len() < MAX_PENDING_REMOVALS
        {
            pending.insert(id);
        }
    }

    /// `SET order:{id} … PX ttl`, with `NX` when `only_if_absent`.
    async fn set(&self, order: &Order, only_if_absent: bool) {
        if !self.gate.open() {
            self.remember_stale(order.id);
            return;
        }
        let Ok(json) = serde_json::to_string(order) else {
            return;
        };
        let mut conn = self.conn.clone();
        let ttl_ms = self.ttl.as_millis().max(1) as u64;
        let mut cmd = redis::cmd("SET");
        cmd.arg(key(order.id)).arg(json).arg("PX").arg(ttl_ms);
        if only_if_absent {
            cmd.arg("NX");
        }
        let stored = bounded(cmd.query_async::<Option<String>>(&mut conn)).await;
        match stored {
            Ok(_) => self.after_success().await,
            Err(e) => {
                self.remember_stale(order.id);
                self.gate.failed("put", &e);
            }
        }
    }

    /// After an outage: delete what may have gone stale while writes were skipped.
    async fn after_success(&self) {
        self.gate.succeeded();
        let stale: Vec<String> = match self.pending_removals.lock() {
            Ok(mut pending) if !pending.is_empty() => pending.drain().map(key).collect(),
            _ => return,
        };
        let mut conn = self.conn.clone();
        let deleted = bounded(redis::cmd("DEL").arg(&stale).query_async::<i64>(&mut conn)).await;
        if let Err(e) = deleted {
            self.gate.failed("del", &e);
        }
    }
}

#[async_trait]
impl OrderCache for RedisCache {
    async fn get(&self, id: Uuid) -> Option<Order> {
        if !self.gate.open() {
            metrics::counter!("order_cache_requests_total", "outcome" => "bypass").increment(1);
            return None;
        }
        let mut conn = self.conn.clone();
        let found = bounded(
            redis::cmd("GET")
                .arg(key(id))
                .query_async::<Option<String>>(&mut conn),
        )
        .await;
        let raw = match found {
            Ok(raw) => {
                self.after_success().await;
                raw
            }
            Err(e) => {
                self.gate.failed("get", &e);
                metrics::counter!("order_cache_requests_total", "outcome" => "error").increment(1);
                return None;
            }
        };
        let order = raw.and_then(|json| match serde_json::from_str::<Order>(&json) {
            Ok(order) => Some(order),
            Err(e) => {
                tracing::warn!(order_id = %id, error = %e, "ignoring an unreadable cached order");
                None
            }
        });
        let outcome = if order.is_some() { "hit" } else { "miss" };
        metrics::counter!("order_cache_requests_total", "outcome" => outcome).increment(1);
        order
    }

    async fn put(&self, order: &Order) {
        self.set(order, false).await;
    }

    async fn fill(&self, order: &Order, _read_started: Instant) {
        // `SET NX`: a fill never replaces what a status change stored meanwhile.
        // Forgetting only happens for the in-memory cache (with Redis every
        // process writes the one shared copy), so NX is all the guard needed.
        self.set(order, true).await;
    }

    async fn remove(&self, id: Uuid) {
        if !self.gate.open() {
            self.remember_stale(id);
            return;
        }
        let mut conn = self.conn.clone();
        match bounded(redis::cmd("DEL").arg(key(id)).query_async::<i64>(&mut conn)).await {
            Ok(_) => self.after_success().await,
            Err(e) => {
                self.remember_stale(id);
                self.gate.failed("remove", &e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::domain::{OrderItem, OrderStatus};

    fn order() -> Order {
        Order {
            id: Uuid::now_v7(),
            user_id: 3,
            items: vec![OrderItem {
                name: "Test Item".into(),
                price: 100.0,
                quantity: 1,
            }],
            total_price: 100.0,
            status: OrderStatus::Pending,
            created_at: OffsetDateTime::now_utc(),
        }
    }

    #[tokio::test]
    async fn an_order_put_is_read_back_under_its_key_with_the_ttl() {
        let Some(client) = orderly_testkit::shared_redis().await else {
            return;
        };
        let cache = RedisCache::new(
            &orderly_testkit::redis_url(),
            &RedisTls::default(),
            Duration::from_secs(300),
        )
        .unwrap();
        let order = order();
        assert_eq!(cache.get(order.id).await, None);
        cache.put(&order).await;
        assert_eq!(cache.get(order.id).await, Some(order.clone()));
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("order:{}", order.id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 300, "{ttl}");
        cache.remove(order.id).await;
        assert_eq!(cache.get(order.id).await, None);
    }

    #[tokio::test]
    async fn a_fill_never_replaces_a_status_change_stored_meanwhile() {
        if orderly_testkit::shared_redis().await.is_none() {
            return;
        }
        let cache = RedisCache::new(
            &orderly_testkit::redis_url(),
            &RedisTls::default(),
            Duration::from_secs(300),
        )
        .unwrap();
        let pending = order();
        let read_started = std::time::Instant::now();
        let paid = Order {
            status: OrderStatus::Paid,
            ..pending.clone()
        };
        cache.put(&paid).await;
        cache.fill(&pending, read_started).await;
        assert_eq!(cache.get(pending.id).await, Some(paid));
        cache.remove(pending.id).await;
        cache.fill(&pending, std::time::Instant::now()).await;
        assert_eq!(cache.get(pending.id).await, Some(pending.clone()));
        cache.remove(pending.id).await;
    }

    #[tokio::test]
    async fn a_dead_redis_is_a_quick_miss_not_an_error() {
        let url = format!("redis://127.0.0.1:{}", orderly_testkit::free_port());
        let cache = RedisCache::new(&url, &RedisTls::default(), Duration::from_secs(300)).unwrap();
        let order = order();
        // The bound only catches a hang; the operations give up after 500 ms.
        tokio::time::timeout(Duration::from_secs(10), async {
            cache.put(&order).await;
            assert_eq!(cache.get(order.id).await, None);
            cache.remove(order.id).await;
        })
        .await
        .expect("a dead Redis does not stall requests");
        assert!(cache.ping().await.is_err());
    }
}
