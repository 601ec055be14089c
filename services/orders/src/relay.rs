//! The outbox relay: publishes events written with their changes, marking them
//! sent only after the bus accepted them (at-least-once; never lost), deletes
//! sent rows once they are older than the retention, and the listener that
//! keeps this process's cache coherent with other processes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;

use orderly_bus::schema::events::{ORDER_STATUS_CHANGED, OrderStatusChanged};
use orderly_bus::{Backoff, Bus, Message};
use orderly_core::Shutdown;

use crate::store::{OrderStore, PendingEvent};
use crate::{OrderService, OrderStatus};

const BATCH: i64 = 500;
/// How often sent rows older than the retention are deleted, and how many at
/// most per statement (a pass repeats until fewer than that went).
const RETENTION_EVERY: Duration = Duration::from_secs(30);
const RETENTION_BATCH: i64 = 5_000;
/// The default of `ORDERS_OUTBOX_RETENTION_SECONDS`.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// Safety net for a missed wake-up and for rows left by a crashed process.
const POLL: Duration = Duration::from_secs(1);
/// Waits after a failed publish: doubling from the first to the cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct OutboxRelay {
    store: Arc<dyn OrderStore>,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
    retention: Duration,
}

fn to_message(event: &PendingEvent) -> Message {
    let mut message = Message::new(event.subject.clone(), Bytes::from(event.payload.clone()));
    message.key = event.key.clone();
    message.headers = event.headers.iter().cloned().collect();
    message
}

impl OutboxRelay {
    pub fn new(store: Arc<dyn OrderStore>, bus: Arc<dyn Bus>, wake: Arc<Notify>) -> Self {
        Self {
            store,
            bus,
            wake,
            retention: DEFAULT_RETENTION,
        }
    }

    /// Keep sent rows `retention` (default [`DEFAULT_RETENTION`]).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// Publish everything unsent that no other relay holds, in order. Returns
    /// how many were sent.
    pub async fn drain_once(&self) -> Result<usize, String> {
        let mut total = 0;
        loop {
            let claim = self
                .store
                .claim_unsent(BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let batch_len = claim.events().len();
            if batch_len == 0 {
                return Ok(total);
            }
            // The whole batch in flight at once: one round trip's wait for
            // all its acknowledgements, not one each. Submitted in order, so
            // each order's events keep theirs.
            let published = futures::future::join_all(
                claim
                    .events()
                    .iter()
                    .map(|event| self.bus.publish(to_message(event))),
            )
            .await;
            let mut sent = Vec::with_capacity(batch_len);
            let mut failure = None;
            for (event, outcome) in claim.events().iter().zip(published) {
                match outcome {
                    Ok(()) => sent.push(event.id),
                    Err(e) => {
                        failure.get_or_insert_with(|| format!("publishing {}: {e}", event.subject));
                    }
                }
            }
            claim.finish(&sent).await.map_err(|e| e.to_string())?;
            metrics::counter!("outbox_published_total").increment(sent.len() as u64);
            total += sent.len();
            if let Some(f) = failure {
                return Err(f);
            }
            if batch_len < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Delete rows sent longer than the retention ago; returns how many went.
    pub async fn delete_expired(&self) -> Result<u64, String> {
        let before = time::OffsetDateTime::now_utc() - self.retention;
        let mut total = 0;
        loop {
            let deleted = self
                .store
                .delete_sent_before(before, RETENTION_BATCH)
                .await
                .map_err(|e| e.to_string())?;
            total += deleted;
            if deleted < RETENTION_BATCH as u64 {
                break;
            }
        }
        if total > 0 {
            metrics::counter!("outbox_deleted_total").increment(total);
            tracing::info!(
                deleted = total,
                retention_s = self.retention.as_secs(),
                "deleted sent outbox rows older than the retention"
            );
        }
        Ok(total)
    }

    /// `outbox_unsent` and `outbox_oldest_unsent_seconds` (the relay's lag).
    async fn record_backlog(&self) {
        if let Ok(backlog) = self.store.outbox_backlog().await {
            metrics::gauge!("outbox_unsent").set(backlog.unsent as f64);
            metrics::gauge!("outbox_oldest_unsent_seconds")
                .set(backlog.oldest_age_seconds(time::OffsetDateTime::now_utc()));
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let (store, wake, stop) = (self.store.clone(), self.wake.clone(), shutdown.clone());
        let watcher = tokio::spawn(async move { store.watch_outbox(wake, stop).await });
        let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
        let mut gauge_at = tokio::time::Instant::now() - POLL;
        let mut retention_at = tokio::time::Instant::now();
        loop {
            match self.drain_once().await {
                Ok(_) => backoff.reset(),
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay could not publish; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => break,
                    }
                    continue;
                }
            }
            // Gauges, not worth a query on every wake-up (each create wakes the relay).
            if gauge_at.elapsed() >= POLL {
                gauge_at = tokio::time::Instant::now();
                self.record_backlog().await;
            }
            if retention_at.elapsed() >= RETENTION_EVERY {
                retention_at = tokio::time::Instant::now();
                if let Err(e) = self.delete_expired().await {
                    tracing::warn!(error = %e, "could not delete sent outbox rows; will try again");
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.wait() => break,
            }
        }
        // One last pass so events of requests that finished during shutdown go out now.
        if let Err(e) = self.drain_once().await {
            tracing::warn!(error = %e, "outbox relay stopped with events unsent; they go out at the next start");
        }
        let _ = watcher.await;
        tracing::info!("outbox relay stopped");
    }
}

/// Drop cached orders that another process changed (in-memory cache coherence).
pub async fn forget_changed_orders(
    service: Arc<OrderService>,
    bus: Arc<dyn Bus>,
    shutdown: Shutdown,
) {
    let mut subscription = match bus.subscribe(ORDER_STATUS_CHANGED).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to order_status_changed; cache coherence across processes is off");
            return;
        }
    };
    loop {
        let delivery = tokio::select! {
            d = subscription.next() => d,
            _ = shutdown.wait() => break,
        };
        let Some(delivery) = delivery else { break };
        match serde_json::from_slice::<OrderStatusChanged<OrderStatus>>(&delivery.message.payload) {
            Ok(event) => service.forget(event.order_id).await,
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed order_status_changed event"),
        }
        delivery.ack();
    }
}
