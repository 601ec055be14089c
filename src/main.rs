//! `orderly`: one binary, every role. This file only wires ports to adapters
//! from the configuration; the services know nothing of transports or stores.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{Bus, JobQueue, RetryPolicy};
use orderly_kit::config::{BusKind, Env, Settings};
use orderly_kit::health::ReadinessCheck;
use orderly_kit::token::TokenVerifier;
use orderly_kit::{Shutdown, http};
use orderly_orders::OrdersState;
use orderly_orders::relay::{OutboxRelay, forget_changed_orders};
use orderly_orders::startup::OrdersParts;
use orderly_worker::{Worker, WorkerConfig};

/// Order processing: auth, orders API, event bus, consumer and worker.
///
/// With nothing configured, `orderly` (= `orderly all`) runs everything in one
/// process on SQLite files and an embedded broker under ./data. Settings come
/// from the environment and an optional .env file (see README, "Configuration").
#[derive(Parser)]
#[command(name = "orderly", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Everything in one process: auth (:8001), orders (:8000), consumer, worker, broker (default)
    All,
    /// The auth service: register, tokens, Google login (AUTH_BIND, default 0.0.0.0:8001)
    Auth,
    /// The orders REST API and its outbox relay (ORDERS_BIND, default 0.0.0.0:8000)
    Orders,
    /// Turns new_order events into process_order jobs
    Consumer,
    /// Runs process_order jobs (simulated payment, then PENDING -> PAID)
    Worker,
    /// Apply database migrations for auth and orders, then exit
    Migrate,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::All))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orderly failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn load_settings() -> Result<Settings> {
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("cannot read .env"),
    }
    Ok(Settings::from_env(&Env::from_process())?)
}

async fn run(command: Command) -> Result<()> {
    orderly_kit::telemetry::init("info,sqlx=warn,tower_http=info");
    let settings = load_settings()?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();

    if command == Command::Migrate {
        orderly_auth::migrate(&settings.auth).await?;
        orderly_orders::startup::migrate(&settings.orders)
            .await
            .context("orders database")?;
        tracing::info!("migrations applied");
        println!("migrations applied");
        return Ok(());
    }

    let mut tasks = tokio::task::JoinSet::new();
    let needs_bus = command != Command::Auth;
    let messaging = if needs_bus {
        Some(open_messaging(&settings).await?)
    } else {
        None
    };

    if matches!(command, Command::All | Command::Auth) {
        let app = orderly_auth::build(&settings.auth).await?;
        let listener = http::bind(&settings.auth.bind, "auth").await?;
        announce("auth", &listener);
        tasks.spawn(http_task(listener, app, shutdown.clone()));
    }

    if let Some((bus, queue)) = &messaging {
        let orders = if matches!(command, Command::All | Command::Orders | Command::Worker) {
            Some(orderly_orders::startup::build(&settings.orders).await?)
        } else {
            None
        };
        if let (true, Some(parts)) = (matches!(command, Command::All | Command::Orders), &orders) {
            let OrdersParts {
                service,
                outbox_written: wake,
                ..
            } = parts;
            bus.ensure_stream(orderly_orders::events::stream()).await?;
            let verifier = Arc::new(
                TokenVerifier::from_file(&settings.orders.public_key_path)
                    .context("orders cannot verify tokens (is ORDERS_PUBLIC_KEY_PATH the auth service's public key?)")?,
            );
            let state = OrdersState {
                service: service.clone(),
                verifier,
                limiter: parts.limiter.clone(),
                trusted_proxies: Arc::new(settings.orders.trusted_proxies.clone()),
            };
            let mut checks: Vec<Arc<dyn ReadinessCheck>> = parts.checks.clone();
            checks.push(Arc::new(BusCheck(bus.clone())));
            let app = http::finish(
                "orders",
                orderly_orders::router(state),
                orderly_orders::openapi(),
                checks,
            );
            let listener = http::bind(&settings.orders.bind, "orders").await?;
            announce("orders", &listener);
            tasks.spawn(http_task(listener, app, shutdown.clone()));
            let relay_stop = shutdown.clone();
            let relay = OutboxRelay::new(service.store().clone(), bus.clone(), wake.clone());
            tasks.spawn(async move {
                relay.run(relay_stop).await;
                Ok(())
            });
            // A shared (Redis) cache is refreshed by whoever writes; only
            // per-process caches need to hear about other processes' changes.
            if !parts.shared_cache {
                let (svc, b, s) = (service.clone(), bus.clone(), shutdown.clone());
                tasks.spawn(async move {
                    forget_changed_orders(svc, b, s).await;
                    Ok(())
                });
            }
        }
        if matches!(command, Command::All | Command::Consumer) {
            let (b, q, s) = (bus.clone(), queue.clone(), shutdown.clone());
            tasks.spawn(async move { orderly_consumer::run(b, q, s).await.context("consumer") });
        }
        if let (true, Some(OrdersParts { service, .. })) =
            (matches!(command, Command::All | Command::Worker), &orders)
        {
            let w = &settings.worker;
            let worker = Arc::new(Worker::new(
                queue.clone(),
                service.clone(),
                WorkerConfig {
                    payment_delay: w.payment_delay,
                    concurrency: w.concurrency,
                    visibility_timeout: w.visibility_timeout,
                },
            ));
            let s = shutdown.clone();
            tasks.spawn(async move {
                worker.run(s).await;
                Ok(())
            });
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
    if let Some((bus, _)) = messaging {
        bus.close().await;
    }
    tracing::info!("orderly stopped");
    result
}

fn announce(service: &str, listener: &tokio::net::TcpListener) {
    if let Ok(addr) = listener.local_addr() {
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        let url = format!("http://{host}:{}", addr.port());
        tracing::info!(service, %url, docs = %format!("{url}/docs"), "listening");
        println!("{service:>6}: {url}  (docs: {url}/docs)");
    }
}

async fn http_task(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: Shutdown,
) -> Result<()> {
    http::serve(listener, app, shutdown)
        .await
        .context("http server")
}

async fn open_messaging(settings: &Settings) -> Result<(Arc<dyn Bus>, Arc<dyn JobQueue>)> {
    match settings.bus {
        BusKind::Embedded => {
            let broker = EmbeddedBroker::open(BrokerConfig {
                data_dir: Some(settings.data_dir.clone()),
                ..BrokerConfig::default()
            })
            .await
            .context("embedded broker")?;
            let w = &settings.worker;
            let policy = RetryPolicy {
                base: w.retry_base,
                cap: w.retry_cap,
                max_retries: w.max_retries,
                ..RetryPolicy::default()
            };
            let queue = EmbeddedQueue::open(&broker, policy)
                .await
                .context("embedded job queue")?;
            Ok((Arc::new(broker), Arc::new(queue)))
        }
    }
}

struct BusCheck(Arc<dyn Bus>);

#[async_trait::async_trait]
impl ReadinessCheck for BusCheck {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}
