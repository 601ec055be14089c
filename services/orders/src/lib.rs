//! The orders service: REST API, cache, rate limit, and event publishing through
//! a transactional outbox. The worker uses [`service::OrderService`] too.

pub mod cache;
pub mod domain;
pub mod events;
pub mod limiter;
mod outbox_listen;
pub mod redis_cache;
mod redis_gate;
pub mod redis_limiter;
pub mod relay;
pub mod routes;
pub mod service;
pub mod sql_store;
pub mod startup;
pub mod store;
#[cfg(test)]
mod store_tests;

pub use domain::{Order, OrderStatus};
pub use routes::{OrdersState, openapi, router};
pub use service::{OrderService, OrdersError, PayOutcome};
