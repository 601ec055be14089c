//! The one place that knows every crate: which store, bus and job queue the
//! configuration names, and what each role starts. The services know nothing
//! of transports or stores.

mod broker;
mod checks;
mod console;
mod jobs;
mod key_file;
mod messaging;
mod ops;
mod orders;
mod queue;
mod reconcile;
mod roles;
mod serve;

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use orderly_core::Shutdown;
use orderly_core::config::{Env, Settings};

pub use broker::BrokerFlags;
pub use messaging::open_bus_for_inspection;
pub use queue::open_for_inspection as open_queue_for_inspection;
pub use roles::Role;

/// The settings from the environment and an optional .env file.
pub fn settings() -> Result<Settings> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("cannot read .env"),
    }
    let env = Env::from_process();
    for unknown in orderly_core::config::unknown_variables(&env) {
        tracing::warn!(
            variable = %unknown.name,
            closest = unknown.closest,
            "{} is not a variable orderly reads (ignored); did you mean {}?",
            unknown.name,
            unknown.closest
        );
    }
    Ok(Settings::from_env(&env)?)
}

/// `orderly migrate`: both databases' migrations, then exit.
pub async fn migrate(settings: &Settings) -> Result<()> {
    // Ctrl-C waits for the migrations instead of cutting one short.
    Shutdown::new().trigger_on_signals();
    orderly_auth::migrate(&settings.auth).await?;
    orderly_orders::startup::migrate(&settings.orders)
        .await
        .context("orders database")?;
    tracing::info!("migrations applied");
    println!("migrations applied");
    Ok(())
}

/// Runs `role` until Ctrl-C or SIGTERM, or until one of its tasks fails.
pub async fn run(role: Role, settings: Settings) -> Result<()> {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let starts = role.starts();
    if starts.broker {
        return broker::run(&settings, shutdown).await;
    }

    let mut tasks = JoinSet::new();
    let messaging = if starts.messaging() {
        Some(messaging::open(&settings).await?)
    } else {
        None
    };
    let mut local_auth = None;
    if starts.auth {
        let app = orderly_auth::startup::build_with_http(&settings.auth, &settings.http).await?;
        let (addr, http) = (&settings.auth.bind, &settings.http);
        local_auth = serve::start_api("auth", addr, app, &shutdown, http, &mut tasks).await?;
    }
    if let Some(messaging) = &messaging {
        let orders = if starts.order_service() {
            Some(orderly_orders::startup::build(&settings.orders).await?)
        } else {
            None
        };
        if let (true, Some(parts)) = (starts.orders, &orders) {
            let check_queue = starts.runs_jobs();
            orders::start(
                &settings,
                parts,
                messaging,
                check_queue,
                local_auth.as_deref(),
                &shutdown,
                &mut tasks,
            )
            .await?;
        }
        if starts.consumer {
            jobs::start_consumer(messaging, &shutdown, &mut tasks);
        }
        if let (true, Some(parts)) = (starts.worker, &orders) {
            let service = parts.service.clone();
            reconcile::start(&settings, &service, messaging, &shutdown, &mut tasks);
            jobs::start_worker(&settings, service, messaging, &shutdown, &mut tasks);
        }
        if let Some(addr) = ops::address(role, &settings) {
            let (queue, bus) = (&messaging.jobs.queue, &messaging.bus);
            let checks = ops::checks(starts, bus, orders.as_ref(), queue);
            // The console needs the orders database: every role that has it.
            let console = orders
                .as_ref()
                .map(|parts| ops::ConsoleInputs::new(parts, queue, bus));
            let server = ops::server(addr, checks, console, shutdown.clone(), &settings);
            if let Some(server) = server.await? {
                tasks.spawn(server);
            }
        }
    }
    tracing::info!(data_dir = %settings.data_dir.display(), "orderly is running; Ctrl-C to stop");

    // The first task to fail stops the others; a clean shutdown waits for all.
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.context("a task panicked").and_then(|r| r);
        if let Err(e) = outcome {
            if result.is_ok() {
                result = Err(e);
            }
            shutdown.trigger();
        }
    }
    if let Some(messaging) = messaging {
        messaging.bus.close().await;
    }
    tracing::info!("orderly stopped");
    result
}
