//! The orders HTTP API in-process: the router built as `main` builds it,
//! driven with `oneshot` on a fresh database per test.

mod helpers;
mod hostile_input;
mod openapi;
mod status_policy;
