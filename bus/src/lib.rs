//! The messaging ports of orderly and the embedded broker behind them.
//!
//! Services talk to [`Bus`] (events: publish, fan-out subscriptions, durable
//! groups) and [`JobQueue`] (jobs: enqueue, reserve, ack, retry, dead letters).
//! They never name a transport: adapters (`embedded` here, Kafka, NATS, Redis in
//! `adapters/`) implement the traits, and the same contract holds for each.

#![warn(missing_docs, unreachable_pub)]

mod backoff;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod embedded;
mod error;
mod lease;
mod message;
pub mod metered;
mod pause;
mod ports;
mod retry;
pub mod schema;
pub mod subject;
pub mod wire;

pub use backoff::Backoff;
pub use error::{BusError, QueueError};
pub use lease::{Lease, LocalLease};
pub use message::{AckKind, Acker, Delivery, Headers, Message, Subscription};
pub use pause::{Pause, PauseNames};
pub use ports::{
    Bus, DeadJob, DeadLetter, Features, GroupOptions, Job, JobQueue, NewJob, QueueStats,
    RetryOutcome, StreamConfig,
};
pub use retry::RetryPolicy;

/// Header names shared by every adapter (the contract's event headers).
pub mod header {
    /// Unique per logical event; consumers deduplicate on it.
    pub const EVENT_ID: &str = "event-id";
    /// The event's type, e.g. `new_order`.
    pub const EVENT_TYPE: &str = "event-type";
    /// W3C trace context of the request that caused the event.
    pub const TRACEPARENT: &str = "traceparent";
}
