//! The ops listener (`ORDERLY_OPS_BIND`): `/health`, `/ready` and `/metrics`
//! for every role but auth and the broker, and the operator's console in the
//! roles that have the orders database (`all`, `orders`, `worker`).

use std::sync::Arc;

use anyhow::Result;

use orderly_bus::{Bus, JobQueue};
use orderly_console::{Access, ConsoleParts, SqlOrdersView};
use orderly_core::Shutdown;
use orderly_core::config::{DEFAULT_ALL_OPS_BIND, Settings};
use orderly_http::health::{self, ReadinessCheck};
use orderly_http::server as http;
use orderly_orders::startup::OrdersParts;

use super::checks::{BusCheck, QueueCheck};
use super::roles::{Role, Starts};
use super::serve;

/// What the ops listener's `/ready` checks: the bus (one the consumer cannot
/// work without, or one the outbox stands in for), the order service's
/// dependencies, and the job queue.
pub fn checks(
    starts: Starts,
    bus: &Arc<dyn Bus>,
    orders: Option<&OrdersParts>,
    queue: &Arc<dyn JobQueue>,
) -> Vec<Arc<dyn ReadinessCheck>> {
    let mut checks: Vec<Arc<dyn ReadinessCheck>> = Vec::new();
    if starts.consumer {
        checks.push(Arc::new(BusCheck::required(bus.clone())));
    } else if starts.orders {
        checks.push(Arc::new(BusCheck::behind_outbox(bus.clone())));
    }
    if let (true, Some(parts)) = (starts.order_service(), orders) {
        // The worker alone changes orders (database, shared cache); it never
        // rate-limits anything.
        checks.extend(
            parts
                .checks
                .iter()
                .filter(|c| starts.orders || c.name() != "rate_limiter")
                .cloned(),
        );
    }
    checks.push(Arc::new(QueueCheck(queue.clone())));
    checks
}

/// Where this role's ops listener goes: the configured address, or for
/// `orderly all` the loopback default, which may be taken (a second `orderly
/// all` on the machine, a test run): then that one goes without.
pub fn address(role: Role, settings: &Settings) -> Option<(String, bool)> {
    let starts = role.starts();
    if !starts.messaging() {
        return None;
    }
    match &settings.ops_bind {
        Some(addr) => Some((addr.clone(), true)),
        None if role == Role::All => Some((DEFAULT_ALL_OPS_BIND.to_string(), false)),
        None => None,
    }
}

/// The console's inputs, all but who may use it (known once bound).
pub struct ConsoleInputs {
    pub orders: Arc<SqlOrdersView>,
    pub jobs: Arc<dyn JobQueue>,
    pub bus: Arc<dyn Bus>,
}

impl ConsoleInputs {
    pub fn new(parts: &OrdersParts, jobs: &Arc<dyn JobQueue>, bus: &Arc<dyn Bus>) -> Self {
        Self {
            orders: Arc::new(SqlOrdersView::new(parts.db.clone())),
            jobs: jobs.clone(),
            bus: bus.clone(),
        }
    }
}

/// Binds `addr` and prints `   ops: http://…` (and the console's URL); the
/// returned task serves until the shutdown. `explicit`: the address was
/// configured, so a port taken fails the start; the default is skipped with
/// a warning instead.
pub async fn server(
    (addr, explicit): (String, bool),
    checks: Vec<Arc<dyn ReadinessCheck>>,
    console: Option<ConsoleInputs>,
    shutdown: Shutdown,
    settings: &Settings,
) -> Result<Option<impl Future<Output = Result<()>> + use<>>> {
    let listener = match http::bind(&addr, "ops (ORDERLY_OPS_BIND)").await {
        Ok(l) => l,
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(
                %addr,
                "{addr} is taken (another orderly?): no ops listener and no console in this \
                 process; set ORDERLY_OPS_BIND=127.0.0.1:0 (any free port) or another address"
            );
            println!("{:>6}: none ({addr} is taken; set ORDERLY_OPS_BIND)", "ops");
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let mut router = health::ops_router(checks.clone());
    let mut console_url = None;
    if let (Some(inputs), Ok(bound)) = (console, listener.local_addr()) {
        let token = settings.console_token.as_ref().map(|t| t.expose());
        let access = Access::for_listener(bound, token);
        match access {
            Access::Refused => tracing::warn!(
                addr = %bound,
                "the ops listener is not on a loopback address and ORDERLY_CONSOLE_TOKEN is \
                 unset: the console refuses every request there"
            ),
            Access::Token(_) => tracing::info!("the console asks for ORDERLY_CONSOLE_TOKEN"),
            Access::Loopback | Access::Admin(_) => {}
        }
        router = router.merge(orderly_console::router(ConsoleParts {
            orders: inputs.orders,
            jobs: inputs.jobs,
            bus: inputs.bus,
            checks,
            pending_after: settings.reconcile.after,
            access,
        }));
        console_url = Some("/console");
    }
    serve::announce_ops(&listener, console_url);
    Ok(Some(serve::serve(
        listener,
        router,
        shutdown,
        settings.http.clone(),
    )))
}
