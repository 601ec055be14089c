//! Leases (one holder at a time per name) on the queue's Redis.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use orderly_bus::{Lease, QueueError};

use crate::{RedisQueue, millis, scripts, to_queue_error};

impl RedisQueue {
    /// Leases on this queue's Redis, under `<prefix>:lease:<name>`.
    pub fn lease(&self) -> RedisLease {
        RedisLease {
            conn: self.inner.conn.clone(),
            prefix: format!("{}:lease:", self.inner.config.prefix),
            release: redis::Script::new(scripts::LEASE_RELEASE),
        }
    }
}

/// A lease on Redis: `SET key token NX PX ttl`, released by compare-and-delete,
/// so a holder whose lease expired never releases its successor's.
#[derive(Clone)]
pub struct RedisLease {
    conn: ConnectionManager,
    prefix: String,
    release: redis::Script,
}

impl std::fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLease")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Lease for RedisLease {
    async fn try_acquire(&self, name: &str, ttl: Duration) -> Result<Option<String>, QueueError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{name}", self.prefix))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(to_queue_error)?;
        Ok(set.map(|_| token))
    }

    async fn release(&self, name: &str, token: &str) -> Result<bool, QueueError> {
        let deleted: i64 = self
            .release
            .key(format!("{}{name}", self.prefix))
            .arg(token)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(to_queue_error)?;
        Ok(deleted == 1)
    }
}
