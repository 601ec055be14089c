//! What every orderly service shares: configuration, errors as the contract's
//! `{"detail": …}`, request extractors, token verification, health/ready/metrics,
//! HTTP serving with graceful shutdown, and telemetry.

pub mod client_ip;
pub mod config;
pub mod cors;
pub mod edge;
pub mod error;
pub mod extract;
pub mod headers;
pub mod health;
pub mod http;
pub mod routes;
pub mod shutdown;
pub mod telemetry;
pub mod timeouts;
pub mod token;
pub mod trace_context;
pub mod write_deadline;

pub use error::{ApiError, FieldError};
pub use shutdown::Shutdown;
