//! `/health`, `/ready` and `/metrics` on `ORDERLY_OPS_BIND` for a role
//! without an HTTP API (`consumer`, `worker`), and what its `/ready` checks.

use std::sync::Arc;

use anyhow::Result;

use orderly_bus::{Bus, JobQueue};
use orderly_core::Shutdown;
use orderly_core::config::Settings;
use orderly_http::health::{self, ReadinessCheck};
use orderly_http::server as http;
use orderly_orders::startup::OrdersParts;

use super::checks::{BusCheck, QueueCheck};
use super::roles::Starts;
use super::serve;

/// What the ops listener's `/ready` checks: the bus the consumer reads, the
/// order service's dependencies the worker writes to, and the job queue.
pub fn checks(
    starts: Starts,
    bus: &Arc<dyn Bus>,
    orders: Option<&OrdersParts>,
    queue: &Arc<dyn JobQueue>,
) -> Vec<Arc<dyn ReadinessCheck>> {
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = Vec::new();
    if starts.consumer {
        checks.push(Arc::new(BusCheck::required(bus.clone())));
    }
    if let (true, Some(parts)) = (starts.worker, orders) {
        // The worker changes orders (database, shared cache); it never
        // rate-limits anything.
        checks.extend(
            parts
                .checks
                .iter()
                .filter(|c| c.name() != "rate_limiter")
                .cloned(),
        );
    }
    checks.push(Arc::new(QueueCheck(queue.clone())));
    checks
}

/// Binds `addr` and prints `   ops: http://…`; the returned task serves
/// until the shutdown.
pub async fn server(
    addr: &str,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    shutdown: Shutdown,
    settings: &Settings,
) -> Result<impl Future<Output = Result<()>> + use<>> {
    let listener = http::bind(addr, "ops (ORDERLY_OPS_BIND)").await?;
    serve::announce_ops(&listener);
    Ok(serve::serve(
        listener,
        health::ops_router(checks),
        shutdown,
        settings.http.clone(),
    ))
}
