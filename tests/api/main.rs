//! Black-box tests: each starts the built `orderly` binary on a fresh data
//! directory with OS-chosen ports and talks HTTP to it.

mod auth_security;
mod broker_security;
mod chaos;
mod cli;
mod console;
mod console_admin;
mod contract;
mod crash;
mod e2e;
mod embedded_nats;
mod events_cli;
mod faults;
mod helpers;
mod hostile_input;
mod http_edge;
mod kafka;
mod nats;
mod operability;
mod outages;
mod production;
mod queue_chaos;
mod reconcile;
mod redis_queue;
mod shutdown;
mod tls;
