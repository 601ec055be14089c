//! The orders service: REST API, cache, rate limit, and event publishing through
//! a transactional outbox. The worker uses [`service::OrderService`] too, and
//! builds this crate without its `http` feature (no axum).

pub mod cache;
pub mod domain;
pub mod events;
pub mod limiter;
mod outbox_listen;
mod pay_batch;
#[cfg(test)]
mod pipeline_tests;
pub mod redis_cache;
mod redis_gate;
pub mod redis_limiter;
pub mod relay;
#[cfg(feature = "http")]
pub mod routes;
pub mod service;
pub mod sql_store;
pub mod startup;
pub mod store;
#[cfg(test)]
mod store_tests;

pub use domain::{Order, OrderStatus};
#[cfg(feature = "http")]
pub use routes::{OrdersState, openapi, router};
pub use service::{Caller, OrderService, OrdersError, PayOutcome};
