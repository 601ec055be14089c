//! The operator's console: server-rendered pages that show where orders are
//! stuck and the buttons that move them on.
//!
//! - `/console`: the overview (orders by status, created/PAID per minute with
//!   the created→PAID latency, the queue, dead jobs, bus dead letters, the
//!   outbox, each dependency's health), refreshed by polling
//!   `/console/api/overview`;
//! - `/console/stuck`: dead jobs and bus dead letters with their actions, and
//!   the orders PENDING longer than the reconciler's threshold;
//! - `/console/orders/{id}` and `/console/orders?q=`: an order's story.
//!
//! It reads through what the wiring hands it ([`ConsoleParts`]: the orders
//! database's [`OrdersView`], the [`JobQueue`] and [`Bus`] ports, readiness
//! checks). It is served on the ops listener and, with `ORDERS_CONSOLE=on`,
//! beside the orders API for admin accounts, where it adds no layer to the
//! API's routes.
//! Who may use it and how its forms are protected: [`session`].

pub mod html;
mod pages;
pub mod session;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use orderly_bus::{Bus, JobQueue};
use orderly_core::readiness::ReadinessCheck;

pub use session::{Access, AdminSignIn, SignInError, SignedIn};
pub use view::{OrdersView, SqlOrdersView};

/// What the console shows and acts on, as the wiring gives it.
pub struct ConsoleParts {
    /// The orders database, read only.
    pub orders: Arc<dyn OrdersView>,
    /// The `process_order` queue's stats and dead jobs.
    pub jobs: Arc<dyn JobQueue>,
    /// The events stream's dead letters.
    pub bus: Arc<dyn Bus>,
    /// The process's dependencies, as its `/ready` checks them.
    pub checks: Vec<Arc<dyn ReadinessCheck>>,
    /// `RECONCILE_AFTER_SECONDS`: an order PENDING longer is stuck.
    pub pending_after: Duration,
    /// Who may use it (from the listener's address and the token).
    pub access: Access,
}

/// The console's routes, all under `/console`, to merge into the ops router.
pub fn router(parts: ConsoleParts) -> Router {
    pages::router(parts)
}
