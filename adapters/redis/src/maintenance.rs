//! Maintenance of a queue, run by the scheduler rather than by workers: the
//! retry mover, the lease sweep, trimming, and deleting a queue.

use std::time::Duration;

use redis::AsyncCommands;

use orderly_bus::QueueError;

use crate::{RedisQueue, millis, to_queue_error};

/// Expired leases and due retries handled per script call.
const SWEEP_LIMIT: usize = 500;

/// What a maintenance sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Jobs moved to the dead letters as poison.
    pub poisoned: u64,
    /// Jobs whose lease ran out, waiting for the next `reserve` to take them over.
    pub expired: u64,
}

/// What a trim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Acked stream entries dropped.
    pub trimmed: u64,
    /// Idle consumers (worker processes long gone) removed from the group.
    pub consumers_forgotten: u64,
}

impl RedisQueue {
    /// The retry mover: due retries of `queue` back into its stream.
    pub async fn move_due_retries(&self, queue: &str) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        let mut total = 0;
        loop {
            let moved: u64 = Self::invocation(&self.inner.scripts.move_due, &k)
                .arg(SWEEP_LIMIT)
                .invoke_async(&mut self.conn())
                .await
                .map_err(to_queue_error)?;
            total += moved;
            if moved < SWEEP_LIMIT as u64 {
                return Ok(total);
            }
        }
    }

    /// Expired leases: poison jobs to the dead letters; the others are taken
    /// over by the next `reserve` (which does that itself, also without this).
    pub async fn sweep_expired(&self, queue: &str) -> Result<SweepReport, QueueError> {
        let k = self.keys(queue)?;
        let (poisoned, expired): (u64, u64) = Self::invocation(&self.inner.scripts.sweep, &k)
            .arg(SWEEP_LIMIT)
            .arg(self.inner.config.max_deliveries.max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        Ok(SweepReport { poisoned, expired })
    }

    /// Drop acked stream entries (never a pending or undelivered one) and forget
    /// consumers idle for `idle_consumer` with nothing pending.
    pub async fn trim(
        &self,
        queue: &str,
        idle_consumer: Duration,
    ) -> Result<TrimReport, QueueError> {
        let k = self.keys(queue)?;
        let (trimmed, consumers_forgotten): (u64, u64) =
            Self::invocation(&self.inner.scripts.trim, &k)
                .arg(millis(idle_consumer))
                .invoke_async(&mut self.conn())
                .await
                .map_err(to_queue_error)?;
        Ok(TrimReport {
            trimmed,
            consumers_forgotten,
        })
    }

    /// Entries in the stream (acked ones until a trim drops them).
    pub async fn stream_len(&self, queue: &str) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        self.conn().xlen(&k.stream).await.map_err(to_queue_error)
    }

    /// Delete every key of `queue` (tests and decommissioning); job ids are forgotten.
    pub async fn destroy(&self, queue: &str) -> Result<(), QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<String> = conn
                .scan_match(format!("{}:*", k.base))
                .await
                .map_err(to_queue_error)?;
            while let Some(key) = iter.next_item().await {
                keys.push(key.map_err(to_queue_error)?);
            }
        }
        for chunk in keys.chunks(500) {
            let _: () = conn.del(chunk).await.map_err(to_queue_error)?;
        }
        Ok(())
    }
}
