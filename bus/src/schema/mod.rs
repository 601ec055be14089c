//! What travels on the bus and the job queue: the subjects, stream and queue
//! names, and the JSON payloads producers and consumers agree on.
//!
//! The producer and the consumer of a payload live in different crates; both
//! read its shape from here, so neither needs the other.

pub mod events;
pub mod jobs;
