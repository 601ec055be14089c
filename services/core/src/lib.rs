//! What every orderly role shares, HTTP or not: configuration from the
//! environment, the shutdown signal, logging, and the W3C trace context that
//! requests, events and jobs carry.

#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod field_error;
pub mod metric_catalog;
pub mod readiness;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub use field_error::FieldError;
pub use shutdown::Shutdown;
