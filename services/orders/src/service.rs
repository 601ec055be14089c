//! What can be done with orders, whoever asks (HTTP handlers, the worker).

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use orderly_core::FieldError;
use orderly_core::config::StatusPolicy;

use crate::cache::OrderCache;
use crate::domain::{Order, OrderCreate, OrderStatus};
use crate::events::OutboxEvent;
use crate::pay_batch::PayBatcher;
use crate::store::{Created, IdempotencyKey, OrderStore, StatusChange, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("Order not found")]
    NotFound,
    #[error("Not authorized")]
    NotAuthorized,
    #[error("invalid order")]
    Invalid(Vec<FieldError>),
    #[error("Cannot change status from {from} to {to}")]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error("Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OrdersError {
    /// The database cannot serve for now: nothing is wrong with the order or
    /// the request, a later try can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, OrdersError::Store(StoreError::Unavailable(_)))
    }
}

/// Who asks: the service decides ownership and the status policy from this
/// alone, so it needs no HTTP type (the API's authenticated user implements it).
pub trait Caller: Sync {
    /// The caller's user id.
    fn user_id(&self) -> i64;
    /// Whether the caller has the `admin` role.
    fn is_admin(&self) -> bool;
}

/// What the worker's payment step did.
#[derive(Debug, Clone, PartialEq)]
pub enum PayOutcome {
    Paid(Order),
    /// Not PENDING any more (paid by an earlier run, or canceled): nothing to do.
    AlreadyDone(Order),
}

/// What a create did: a new order, or the earlier one of an idempotent retry.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    New(Order),
    Replayed(Order),
}

pub struct OrderService {
    store: Arc<dyn OrderStore>,
    cache: Arc<dyn OrderCache>,
    policy: StatusPolicy,
    /// Wakes the outbox relay after a write.
    outbox_written: Arc<tokio::sync::Notify>,
    /// Payments arriving together, written in one transaction.
    payments: PayBatcher,
}

impl OrderService {
    pub fn new(
        store: Arc<dyn OrderStore>,
        cache: Arc<dyn OrderCache>,
        policy: StatusPolicy,
        outbox_written: Arc<tokio::sync::Notify>,
    ) -> Self {
        Self {
            store,
            cache,
            policy,
            outbox_written,
            payments: PayBatcher::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn OrderStore> {
        &self.store
    }

    pub async fn create(
        &self,
        user: &dyn Caller,
        input: OrderCreate,
        idempotency_key: Option<String>,
        traceparent: Option<&str>,
    ) -> Result<CreateOutcome, OrdersError> {
        let canonical = serde_json::to_string(&input).unwrap_or_default();
        let valid = input.validate().map_err(OrdersError::Invalid)?;
        let now = OffsetDateTime::now_utc();
        let order = Order {
            id: Uuid::now_v7(),
            user_id: user.user_id(),
            items: valid.items.clone(),
            total_price: crate::domain::from_cents(valid.total_cents),
            status: OrderStatus::Pending,
            created_at: now,
        };
        let event = OutboxEvent::new_order(order.id, order.user_id, now, traceparent);
        let key = idempotency_key.map(|key| IdempotencyKey {
            key,
            request: canonical,
        });
        let created = self
            .store
            .create(
                &order,
                &valid,
                &event,
                key.as_ref().map(|k| (k, user.user_id())),
            )
            .await?;
        match created {
            Created::New(order) => {
                self.outbox_written.notify_one();
                self.cache.put(&order).await;
                metrics::counter!("orders_created_total").increment(1);
                tracing::info!(order_id = %order.id, user_id = order.user_id, "order created");
                Ok(CreateOutcome::New(order))
            }
            Created::Replayed(order) => Ok(CreateOutcome::Replayed(order)),
            Created::KeyReused => Err(OrdersError::IdempotencyKeyReused),
        }
    }

    /// An order by id, from the cache when present.
    async fn load(&self, id: Uuid) -> Result<Order, OrdersError> {
        if let Some(order) = self.cache.get(id).await {
            return Ok(order);
        }
        let read_started = std::time::Instant::now();
        let order = self.store.get(id).await?.ok_or(OrdersError::NotFound)?;
        self.cache.fill(&order, read_started).await;
        Ok(order)
    }

    pub async fn get(&self, user: &dyn Caller, id: Uuid) -> Result<Order, OrdersError> {
        let order = self.load(id).await?;
        if order.user_id != user.user_id() && !user.is_admin() {
            return Err(OrdersError::NotAuthorized);
        }
        Ok(order)
    }

    pub async fn list(
        &self,
        user: &dyn Caller,
        user_id: i64,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, OrdersError> {
        if user_id != user.user_id() && !user.is_admin() {
            return Err(OrdersError::NotAuthorized);
        }
        Ok(self.store.list_by_user(user_id, limit, offset).await?)
    }

    /// A status change asked for over HTTP: ownership, policy, legality.
    pub async fn set_status(
        &self,
        user: &dyn Caller,
        id: Uuid,
        to: OrderStatus,
        traceparent: Option<&str>,
    ) -> Result<Order, OrdersError> {
        // The current status decides legality, so read it from the database, not the cache.
        let order = self.store.get(id).await?.ok_or(OrdersError::NotFound)?;
        let owner = order.user_id == user.user_id();
        if !owner && !user.is_admin() {
            return Err(OrdersError::NotAuthorized);
        }
        let allowed_by_policy = match self.policy {
            StatusPolicy::Owner => true,
            StatusPolicy::Strict => user.is_admin() || to == OrderStatus::Canceled,
        };
        if !allowed_by_policy {
            return Err(OrdersError::NotAuthorized);
        }
        if !order.status.can_become(to) {
            return Err(OrdersError::IllegalTransition {
                from: order.status,
                to,
            });
        }
        match self.transition(&order, to, traceparent).await? {
            StatusChange::Changed(updated) => Ok(updated),
            StatusChange::Conflict(current) => Err(OrdersError::IllegalTransition {
                from: current.status,
                to,
            }),
            StatusChange::NotFound => Err(OrdersError::NotFound),
        }
    }

    /// The worker's step: PENDING→PAID exactly once, however often it runs.
    /// Payments that arrive together are written in one transaction.
    pub async fn pay(
        &self,
        id: Uuid,
        traceparent: Option<&str>,
    ) -> Result<PayOutcome, OrdersError> {
        match self.payments.pay(&self.store, id, traceparent).await? {
            StatusChange::Changed(updated) => {
                self.outbox_written.notify_one();
                self.cache.put(&updated).await;
                metrics::counter!("order_status_changes_total", "to" => OrderStatus::Paid.as_str())
                    .increment(1);
                Ok(PayOutcome::Paid(updated))
            }
            StatusChange::Conflict(current) => {
                self.cache.put(&current).await;
                Ok(PayOutcome::AlreadyDone(current))
            }
            StatusChange::NotFound => {
                self.cache.remove(id).await;
                Err(OrdersError::NotFound)
            }
        }
    }

    /// Conditional update + event + cache refresh.
    async fn transition(
        &self,
        order: &Order,
        to: OrderStatus,
        traceparent: Option<&str>,
    ) -> Result<StatusChange, OrdersError> {
        let now = OffsetDateTime::now_utc();
        let event = OutboxEvent::status_changed(
            order.id,
            order.user_id,
            order.status,
            to,
            now,
            traceparent,
        );
        let change = self
            .store
            .change_status(order.id, order.status, to, &event, now)
            .await?;
        match &change {
            StatusChange::Changed(updated) => {
                self.outbox_written.notify_one();
                self.cache.put(updated).await;
                metrics::counter!("order_status_changes_total", "to" => to.as_str()).increment(1);
            }
            StatusChange::Conflict(current) => self.cache.put(current).await,
            StatusChange::NotFound => self.cache.remove(order.id).await,
        }
        Ok(change)
    }

    /// Another process changed an order: forget our copy.
    pub async fn forget(&self, id: Uuid) {
        self.cache.remove(id).await;
    }
}
