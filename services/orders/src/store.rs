//! The port to the orders database.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus, ValidOrder};
use crate::events::OutboxEvent;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    /// The database cannot serve for now (unreachable, shutting down, busy):
    /// worth a retry later, the request itself is not at fault.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// How an idempotent create ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Order),
    /// The same key was used before with the same body: the earlier order.
    Replayed(Order),
    /// The same key was used before with another body.
    KeyReused,
}

/// An idempotency key and the canonical body it was sent with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request: String,
}

/// How a conditional status change ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusChange {
    Changed(Order),
    /// The order was not in the expected status (someone else changed it first).
    Conflict(Order),
    NotFound,
}

/// An unsent outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub id: i64,
    pub subject: String,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub payload: String,
}

/// An order still PENDING, and what the consumer named its job after: the
/// `event_id` of the order's `new_order` outbox row (`None` once that row is
/// gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalePending {
    pub order_id: Uuid,
    pub created_at: OffsetDateTime,
    pub new_order_event: Option<Uuid>,
    /// The `traceparent` the event carried, so the job continues its trace.
    pub traceparent: Option<String>,
}

/// How far the outbox relay is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxBacklog {
    /// Rows not yet published.
    pub unsent: i64,
    /// When the oldest of them was written (`None` when there are none).
    pub oldest_created_at: Option<OffsetDateTime>,
}

impl OutboxBacklog {
    /// Seconds the oldest unsent row has waited at `now` (0 when none waits).
    pub fn oldest_age_seconds(&self, now: OffsetDateTime) -> f64 {
        self.oldest_created_at
            .map(|at| (now - at).as_seconds_f64().max(0.0))
            .unwrap_or(0.0)
    }
}

/// Unsent outbox rows taken by one relay. While it is held no other relay
/// (on PostgreSQL: in any process) takes them; dropping it without
/// [`OutboxClaim::finish`] hands them back unsent.
#[async_trait]
pub trait OutboxClaim: Send {
    fn events(&self) -> &[PendingEvent];

    /// Mark `sent` (a subset of [`OutboxClaim::events`]) as sent and release the rest.
    async fn finish(self: Box<Self>, sent: &[i64]) -> Result<(), StoreError>;
}

#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Write the order and its `new_order` event in one transaction.
    async fn create(
        &self,
        order: &Order,
        valid: &ValidOrder,
        event: &OutboxEvent,
        idempotency: Option<(&IdempotencyKey, i64)>,
    ) -> Result<Created, StoreError>;

    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError>;

    async fn list_by_user(
        &self,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, StoreError>;

    /// `UPDATE … WHERE status = from`, the history row and the event, in one transaction.
    async fn change_status(
        &self,
        id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
        event: &OutboxEvent,
        at: OffsetDateTime,
    ) -> Result<StatusChange, StoreError>;

    /// [`OrderStore::change_status`] for many orders in one transaction:
    /// every order of `ids` that is in `from` becomes `to`, with its history
    /// row and the event `event_for` makes of the changed order. One outcome
    /// per id, in order; an id given twice changes once (the second is a
    /// conflict).
    async fn change_statuses(
        &self,
        ids: &[Uuid],
        from: OrderStatus,
        to: OrderStatus,
        at: OffsetDateTime,
        event_for: &(dyn for<'o> Fn(&'o Order) -> OutboxEvent + Send + Sync),
    ) -> Result<Vec<StatusChange>, StoreError>;

    async fn unsent_events(&self, limit: i64) -> Result<Vec<PendingEvent>, StoreError>;

    async fn mark_sent(&self, ids: &[i64]) -> Result<(), StoreError>;

    async fn unsent_count(&self) -> Result<i64, StoreError>;

    /// Every outbox row, sent or not (what retention keeps bounded).
    async fn outbox_rows(&self) -> Result<i64, StoreError>;

    /// Delete up to `limit` rows sent before `before`, oldest first; never an
    /// unsent row. Returns how many went.
    async fn delete_sent_before(
        &self,
        before: OffsetDateTime,
        limit: i64,
    ) -> Result<u64, StoreError>;

    /// The unsent count and the oldest unsent row's time, in one query.
    async fn outbox_backlog(&self) -> Result<OutboxBacklog, StoreError>;

    /// Take up to `limit` unsent events, oldest first, skipping those another
    /// relay holds (on PostgreSQL a claim with a lease, taken with `FOR UPDATE
    /// SKIP LOCKED` and committed at once), so several orders instances relay
    /// without sending an event twice in the normal case. A relay that dies
    /// holding a claim leaves its rows to others when the lease ends.
    async fn claim_unsent(&self, limit: i64) -> Result<Box<dyn OutboxClaim>, StoreError>;

    /// Wake `wake` whenever another process writes an outbox row (LISTEN/NOTIFY on
    /// PostgreSQL), until `shutdown`. Returns at once where writers are all in this
    /// process (SQLite): they wake the relay directly.
    async fn watch_outbox(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        shutdown: orderly_core::Shutdown,
    ) {
        let _ = (wake, shutdown);
    }

    /// Up to `limit` orders PENDING since before `created_before`, oldest
    /// first (by creation time, then id) and after `from` if given, each with
    /// its `new_order` event's id: the reconciler's pages.
    async fn stale_pending(
        &self,
        created_before: OffsetDateTime,
        from: Option<&StalePending>,
        limit: i64,
    ) -> Result<Vec<StalePending>, StoreError>;

    async fn check(&self) -> Result<(), StoreError>;
}
