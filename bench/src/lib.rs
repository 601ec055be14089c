//! orderly's benchmark (issue 10): HTTP against orderly, a bare axum ceiling and
//! any other implementation of the API; the bus against nats-server and Kafka;
//! the job queues; order → PAID; footprint. Every comparison is run side by side
//! in one invocation and reported as a ratio, because absolute numbers on a
//! shared machine are not comparable from one run to the next.

pub mod api;
pub mod bare;
pub mod broker;
pub mod bus;
pub mod cpu;
pub mod http;
pub mod postgres;
pub mod progress;
pub mod queue;
pub mod report;
pub mod runner;
pub mod spawn;
