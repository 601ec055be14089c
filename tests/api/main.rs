//! Black-box tests: each starts the built `orderly` binary on a fresh data
//! directory with OS-chosen ports and talks HTTP to it.

mod cli;
mod contract;
mod crash;
mod e2e;
mod helpers;
mod production;
