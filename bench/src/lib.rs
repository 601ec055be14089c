//! orderly's benchmark: HTTP against orderly, a bare axum ceiling and
//! any other implementation of the API; the bus against nats-server and Kafka;
//! the job queues; order → PAID; the order pipeline at full rate; footprint. Every comparison is run side by side
//! in one invocation and reported as a ratio, because absolute numbers on a
//! shared machine are not comparable from one run to the next.
#![warn(missing_docs, unreachable_pub)]

mod api;
mod bare;
mod broker;
pub mod bus;
mod clock;
mod cpu;
mod disk;
mod http;
pub mod ids;
mod lifetimes;
mod nats_server;
mod postgres;
mod progress;
mod queue;
pub mod report;
pub mod sections;
mod spawn;

pub use spawn::default_orderly_bin;
