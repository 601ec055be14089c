//! The subcommands that do one thing and exit: they use the wiring to reach
//! the queue or the databases, but start no role.

pub mod events;
pub mod hash_password;
pub mod healthcheck;
pub mod jobs;
pub mod keygen;
pub mod user;
