//! The jobs the consumer enqueues and the worker runs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The queue the worker takes `process_order` jobs from.
pub const PROCESS_ORDER: &str = "process_order";

/// The id of an order's `process_order` job: the consumer's and the
/// reconciler's, so that neither makes a second job for one order. From the
/// `new_order` event's id when it has one (duplicates of one event make one
/// job); from the order id for producers that send no event id.
pub fn process_order_job_id(order_id: Uuid, new_order_event: Option<&str>) -> String {
    match new_order_event {
        Some(event) => format!("{PROCESS_ORDER}:{event}"),
        None => format!("{PROCESS_ORDER}:order:{order_id}"),
    }
}

/// A `process_order` job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOrder {
    /// The order to pay.
    pub order_id: Uuid,
    /// Trace context of the request that created the order, continued by the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_id_comes_from_the_event_id_else_from_the_order_id() {
        let order = Uuid::nil();
        assert_eq!(
            process_order_job_id(order, Some("e-1")),
            "process_order:e-1"
        );
        assert_eq!(
            process_order_job_id(order, None),
            "process_order:order:00000000-0000-0000-0000-000000000000"
        );
    }
}
