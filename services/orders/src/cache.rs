//! The order cache port (`order:{id}`) and its in-memory implementation.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::Order;

/// A read-through cache of orders. Failures are the cache's to log: callers fall
/// back to the database, so a broken cache never fails a request.
#[async_trait]
pub trait OrderCache: Send + Sync + 'static {
    async fn get(&self, id: Uuid) -> Option<Order>;
    async fn put(&self, order: &Order);
    async fn remove(&self, id: Uuid);
}

/// moka-backed cache with a time-to-live (the old Redis TTL: 300 s).
pub struct MemoryCache {
    entries: moka::sync::Cache<Uuid, Arc<Order>>,
}

impl MemoryCache {
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
        let hit = self.entries.get(&id).map(|o| (*o).clone());
        let outcome = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("order_cache_requests_total", "outcome" => outcome).increment(1);
        hit
    }

    async fn put(&self, order: &Order) {
        self.entries.insert(order.id, Arc::new(order.clone()));
    }

    async fn remove(&self, id: Uuid) {
        self.entries.invalidate(&id);
    }
}
