//! The jobs the consumer enqueues and the worker runs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The queue the worker takes `process_order` jobs from.
pub const PROCESS_ORDER: &str = "process_order";

/// A `process_order` job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessOrder {
    /// The order to pay.
    pub order_id: Uuid,
    /// Trace context of the request that created the order, continued by the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}
