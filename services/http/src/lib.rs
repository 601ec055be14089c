//! The HTTP edge auth and orders share: serving with graceful shutdown and
//! client time bounds, errors as the contract's `{"detail": …}`, request
//! extractors, CORS and security headers, health/ready/metrics, the route
//! table checked against OpenAPI, and token verification with the
//! current-user extractor. Configuration, shutdown and trace context are
//! `orderly-core`'s, so roles without HTTP need none of this.

#![warn(missing_docs, unreachable_pub)]

pub mod client_ip;
pub mod cors;
pub mod edge;
pub mod error;
pub mod extract;
pub mod headers;
pub mod health;
pub mod routes;
pub mod server;
pub mod timeouts;
pub mod token;
pub mod write_deadline;

pub use error::{ApiError, FieldError};
