//! The events orders publishes (contract: `new_order`, `order_status_changed`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::StreamConfig;

/// Subject of the event published once per created order.
pub const NEW_ORDER: &str = "new_order";
/// Subject of the event published on every change of an order's status.
pub const ORDER_STATUS_CHANGED: &str = "order_status_changed";

/// The durable stream holding both events, so a consumer group started later
/// still receives what was published before it.
pub fn stream() -> StreamConfig {
    StreamConfig::new("orders", &[NEW_ORDER, ORDER_STATUS_CHANGED])
}

/// `new_order` value, exactly as the old Kafka consumers read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// The order created.
    pub order_id: Uuid,
    /// Its owner.
    pub user_id: i64,
    /// When it was created (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
}

/// `order_status_changed` value. `Status` is the producer's status type; on
/// the wire a status is its upper-case name (`PENDING`, `PAID`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged<Status> {
    /// The order whose status changed.
    pub order_id: Uuid,
    /// Its owner.
    pub user_id: i64,
    /// The status before the change.
    pub from: Status,
    /// The status after the change.
    pub to: Status,
    /// When it changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
}
