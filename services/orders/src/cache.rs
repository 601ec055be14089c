//! The order cache port (`order:{id}`) and its in-memory implementation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::ops::compute::Op;
use uuid::Uuid;

use crate::Order;

/// A read-through cache of orders. Failures are the cache's to log: callers fall
/// back to the database, so a broken cache never fails a request.
///
/// Two writes, because a read-through fill races with status changes: a reader
/// that loaded PENDING from the database just before the worker committed PAID
/// must not put PENDING back over the worker's PAID (it would stay stale for the
/// whole TTL). [`OrderCache::put`] stores what a change just committed;
/// [`OrderCache::fill`] stores what a reader loaded, and only where nothing newer
/// was stored or forgotten since the read began.
#[async_trait]
pub trait OrderCache: Send + Sync + 'static {
    /// The cached copy, if any.
    async fn get(&self, id: Uuid) -> Option<Order>;
    /// Stores a copy just written to the database (creation, status change).
    async fn put(&self, order: &Order);
    /// Stores a copy loaded from the database by a read that began at
    /// `read_started`, unless the entry was written or forgotten since.
    async fn fill(&self, order: &Order, read_started: Instant);
    /// Forgets the copy (another process changed the order).
    async fn remove(&self, id: Uuid);
}

/// What the in-memory cache holds for an id: the order, or the moment it was
/// forgotten (so a fill from a read begun before that moment is refused).
#[derive(Clone)]
enum Slot {
    Order(Arc<Order>),
    Forgotten(Instant),
}

/// moka-backed cache with a time-to-live (the old Redis TTL: 300 s).
pub struct MemoryCache {
    entries: moka::sync::Cache<Uuid, Slot>,
}

impl MemoryCache {
    /// A cache whose entries live `ttl` and that holds at most `max_entries`.
    pub fn new(ttl: Duration, max_entries: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(max_entries)
                .build(),
        }
    }
}

#[async_trait]
impl OrderCache for MemoryCache {
    async fn get(&self, id: Uuid) -> Option<Order> {
        let hit = match self.entries.get(&id) {
            Some(Slot::Order(order)) => Some((*order).clone()),
            Some(Slot::Forgotten(_)) | None => None,
        };
        let outcome = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("order_cache_requests_total", "outcome" => outcome).increment(1);
        hit
    }

    async fn put(&self, order: &Order) {
        self.entries
            .insert(order.id, Slot::Order(Arc::new(order.clone())));
    }

    async fn fill(&self, order: &Order, read_started: Instant) {
        let _ = self.entries.entry(order.id).and_compute_with(|current| {
            match current.map(|e| e.into_value()) {
                None => Op::Put(Slot::Order(Arc::new(order.clone()))),
                Some(Slot::Forgotten(at)) if at < read_started => {
                    Op::Put(Slot::Order(Arc::new(order.clone())))
                }
                Some(_) => Op::Nop,
            }
        });
    }

    async fn remove(&self, id: Uuid) {
        self.entries.insert(id, Slot::Forgotten(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OrderStatus;
    use crate::domain::OrderItem;

    fn order(status: OrderStatus) -> Order {
        Order {
            id: Uuid::from_u128(7),
            user_id: 1,
            items: vec![OrderItem {
                name: "x".into(),
                price: 1.0,
                quantity: 1,
            }],
            total_price: 1.0,
            status,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn cache() -> MemoryCache {
        MemoryCache::new(Duration::from_secs(300), 100)
    }

    #[tokio::test]
    async fn a_fill_from_a_read_older_than_a_change_keeps_the_change() {
        let cache = cache();
        let read_started = Instant::now();
        cache.put(&order(OrderStatus::Paid)).await;
        cache.fill(&order(OrderStatus::Pending), read_started).await;
        assert_eq!(
            cache.get(Uuid::from_u128(7)).await.unwrap().status,
            OrderStatus::Paid
        );
    }

    #[tokio::test]
    async fn a_fill_from_a_read_older_than_a_forget_is_refused() {
        let cache = cache();
        let read_started = Instant::now();
        cache.remove(Uuid::from_u128(7)).await;
        cache.fill(&order(OrderStatus::Pending), read_started).await;
        assert_eq!(cache.get(Uuid::from_u128(7)).await, None);
        cache.fill(&order(OrderStatus::Paid), Instant::now()).await;
        assert_eq!(
            cache.get(Uuid::from_u128(7)).await.unwrap().status,
            OrderStatus::Paid
        );
    }

    #[tokio::test]
    async fn a_fill_into_an_empty_slot_is_cached() {
        let cache = cache();
        cache
            .fill(&order(OrderStatus::Pending), Instant::now())
            .await;
        assert_eq!(
            cache.get(Uuid::from_u128(7)).await.unwrap().status,
            OrderStatus::Pending
        );
    }
}
