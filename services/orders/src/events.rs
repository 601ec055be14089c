//! The outbox form of the events orders publishes; their subjects and payloads
//! are [`orderly_bus::schema::events`].

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use orderly_bus::schema::events::{NEW_ORDER, NewOrder, ORDER_STATUS_CHANGED, OrderStatusChanged};

use crate::OrderStatus;

/// An event ready for the outbox: written with the change, published by the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    pub event_id: Uuid,
    pub subject: &'static str,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: String,
}

impl OutboxEvent {
    fn new<T: Serialize>(
        subject: &'static str,
        key: Uuid,
        body: &T,
        traceparent: Option<&str>,
    ) -> Self {
        let event_id = Uuid::now_v7();
        let mut headers = vec![
            (
                orderly_bus::header::EVENT_ID.to_string(),
                event_id.to_string(),
            ),
            (
                orderly_bus::header::EVENT_TYPE.to_string(),
                subject.to_string(),
            ),
        ];
        if let Some(tp) = traceparent {
            headers.push((orderly_bus::header::TRACEPARENT.to_string(), tp.to_string()));
        }
        Self {
            event_id,
            subject,
            key: key.to_string(),
            headers,
            // Serialising these plain structs cannot fail.
            payload: serde_json::to_string(body).unwrap_or_default(),
        }
    }

    pub fn new_order(
        order_id: Uuid,
        user_id: i64,
        at: OffsetDateTime,
        traceparent: Option<&str>,
    ) -> Self {
        let body = NewOrder {
            order_id,
            user_id,
            timestamp: at,
        };
        Self::new(NEW_ORDER, order_id, &body, traceparent)
    }

    pub fn status_changed(
        order_id: Uuid,
        user_id: i64,
        from: OrderStatus,
        to: OrderStatus,
        at: OffsetDateTime,
        traceparent: Option<&str>,
    ) -> Self {
        let body = OrderStatusChanged {
            order_id,
            user_id,
            from,
            to,
            timestamp: at,
        };
        Self::new(ORDER_STATUS_CHANGED, order_id, &body, traceparent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_order_has_exactly_the_old_fields() {
        let id = Uuid::nil();
        let at = time::macros::datetime!(2026-02-16 10:30:00 UTC);
        let e = OutboxEvent::new_order(id, 7, at, None);
        assert_eq!(
            e.payload,
            r#"{"order_id":"00000000-0000-0000-0000-000000000000","user_id":7,"timestamp":"2026-02-16T10:30:00Z"}"#
        );
        assert_eq!(e.key, id.to_string());
        assert!(
            e.headers
                .iter()
                .any(|(k, v)| k == "event-id" && *v == e.event_id.to_string())
        );
    }
}
