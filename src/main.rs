//! `orderly`: one binary, every role. This file only wires ports to adapters
//! from the configuration; the services know nothing of transports or stores.

mod allocator;
mod healthcheck;
mod jobs;

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use orderly_bus::metered::{self, MeteredBus, MeteredQueue};
use orderly_bus::{Bus, BusError, JobQueue};
use orderly_consumer::PROCESS_ORDER;
use orderly_core::Shutdown;
use orderly_core::config::{BusKind, Env, KafkaSettings, Settings};
use orderly_http::health::{self, ReadinessCheck};
use orderly_http::server;
use orderly_http::token::TokenVerifier;
use orderly_kafka::{KafkaBus, KafkaConfig};
use orderly_nats::{NatsBus, NatsConfig};
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

#[derive(Subcommand, Clone, PartialEq, Eq)]
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
    /// The embedded broker alone, speaking the NATS client protocol (ORDERLY_BROKER_LISTEN, default 127.0.0.1:4223)
    Broker,
    /// Write a new RS256 token-signing key pair (README, "Key rotation")
    Keygen {
        /// Directory for private.pem (mode 0600) and public.pem; an existing pair is never overwritten
        #[arg(long, default_value = "keys-new")]
        dir: std::path::PathBuf,
        /// Keep a complete existing pair and exit 0 (a container's first-start init job)
        #[arg(long)]
        if_missing: bool,
    },
    /// Container health check: exit 0 when every target answers (no curl needed in the image)
    Healthcheck {
        /// http://HOST:PORT/PATH (must answer 200) or tcp://HOST:PORT (must accept);
        /// default: the /health of auth (:8001) and orders (:8000) on 127.0.0.1
        targets: Vec<String>,
        /// Seconds each target may take
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Inspect the job queue: stats, dead letters, requeue, purge (README, "Job queue on Redis")
    Jobs {
        #[command(subcommand)]
        action: jobs::JobsAction,
    },
    /// User administration in the auth database
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand, Clone, PartialEq, Eq)]
enum UserAction {
    /// Give the user the `admin` role (effective from their next login or refresh)
    Promote { email: String },
    /// Give the user back the plain `user` role
    Demote { email: String },
}

fn main() -> std::process::ExitCode {
    allocator::tune();
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
    let command = cli.command.unwrap_or(Command::All);
    // The healthcheck answers on stdout only; every other command logs.
    let logs = (!matches!(command, Command::Healthcheck { .. }))
        .then(|| orderly_core::telemetry::init("info,sqlx=warn"));
    let outcome = runtime.block_on(run(command));
    drop(runtime);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orderly failed");
            // The log lines first, then the one-line summary after them.
            drop(logs);
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
    if let Command::Healthcheck { targets, timeout } = &command {
        return healthcheck::run(targets, std::time::Duration::from_secs(*timeout)).await;
    }
    if let Command::Keygen { dir, if_missing } = &command {
        return keygen(dir.clone(), *if_missing).await;
    }
    let settings = load_settings()?;
    if let Command::Jobs { action } = &command {
        return jobs::cli(&settings, action).await;
    }
    if let Command::User { action } = &command {
        let (email, role) = match action {
            UserAction::Promote { email } => (email, "admin"),
            UserAction::Demote { email } => (email, "user"),
        };
        return match orderly_auth::set_role(&settings.auth, email, role).await? {
            Some(user) => {
                println!("user {} ({}) now has role {role}", user.id, user.email);
                Ok(())
            }
            None => Err(anyhow::anyhow!("no user with e-mail {email}")),
        };
    }
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

    if command == Command::Broker {
        return run_broker(&settings, shutdown).await;
    }

    let mut tasks = tokio::task::JoinSet::new();
    let needs_bus = command != Command::Auth;
    let messaging = if needs_bus {
        Some(open_messaging(&settings).await?)
    } else {
        None
    };

    if matches!(command, Command::All | Command::Auth) {
        let app = orderly_auth::startup::build_with_http(&settings.auth, &settings.http).await?;
        let listener = server::bind(&settings.auth.bind, "auth").await?;
        announce("auth", &listener);
        tasks.spawn(http_task(
            listener,
            app,
            shutdown.clone(),
            settings.http.clone(),
        ));
    }

    if let Some((
        bus,
        jobs::QueueParts {
            queue,
            maintenance,
            lease,
        },
    )) = &messaging
    {
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
            ensure_events_stream(bus.clone(), shutdown.clone()).await?;
            let verifier = Arc::new(match &settings.orders.jwks_url {
                Some(url) => TokenVerifier::from_jwks_url(
                    url,
                    &settings.orders.verifier,
                    settings.orders.jwks_min_refetch,
                )
                .await
                .context("orders cannot verify tokens (ORDERS_JWKS_URL)")?,
                None => TokenVerifier::from_file(&settings.orders.public_key_path, &settings.orders.verifier)
                    .context("orders cannot verify tokens (is ORDERS_PUBLIC_KEY_PATH the auth service's public key?)")?,
            });
            let state = OrdersState {
                service: service.clone(),
                verifier,
                limiter: parts.limiter.clone(),
                trusted_proxies: Arc::new(settings.orders.trusted_proxies.clone()),
            };
            let mut checks: Vec<Arc<dyn ReadinessCheck>> = parts.checks.clone();
            checks.push(Arc::new(BusCheck(bus.clone())));
            if settings.orders.jwks_url.is_some() {
                checks.push(Arc::new(JwksCheck(state.verifier.clone())));
            }
            if command == Command::All {
                checks.push(Arc::new(QueueCheck(queue.clone())));
            }
            let app = server::finish(
                "orders",
                orderly_orders::router(state),
                orderly_orders::openapi(),
                checks,
                &settings.http,
            );
            let listener = server::bind(&settings.orders.bind, "orders").await?;
            announce("orders", &listener);
            tasks.spawn(http_task(
                listener,
                app,
                shutdown.clone(),
                settings.http.clone(),
            ));
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
                    // It returns early when the bus cannot be reached: listen again.
                    loop {
                        forget_changed_orders(svc.clone(), b.clone(), s.clone()).await;
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                            _ = s.wait() => return Ok(()),
                        }
                    }
                });
            }
        }
        if matches!(command, Command::All | Command::Consumer) {
            let (b, q, s) = (bus.clone(), queue.clone(), shutdown.clone());
            tasks.spawn(run_consumer(b, q, s));
        }
        if command == Command::Consumer
            && let Some(addr) = &settings.ops_bind
        {
            let checks: Vec<Arc<dyn ReadinessCheck>> = vec![
                Arc::new(BusCheck(bus.clone())),
                Arc::new(QueueCheck(queue.clone())),
            ];
            let ops = ops_server(addr, checks, shutdown.clone(), &settings).await?;
            tasks.spawn(ops);
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
            let (m, l, s) = (maintenance.clone(), lease.clone(), shutdown.clone());
            tasks.spawn(async move {
                orderly_worker::maintenance::run(m, l, s)
                    .await
                    .context("maintenance scheduler")
            });
            let (q, s) = (queue.clone(), shutdown.clone());
            tasks.spawn(async move {
                metered::watch_queue_depth(q, PROCESS_ORDER, QUEUE_DEPTH_EVERY, s.wait()).await;
                Ok(())
            });
            if command == Command::Worker
                && let (Some(addr), Some(parts)) = (&settings.ops_bind, &orders)
            {
                // The worker changes orders (database, shared cache); it never
                // rate-limits anything.
                let mut checks: Vec<Arc<dyn ReadinessCheck>> = parts
                    .checks
                    .iter()
                    .filter(|c| c.name() != "rate_limiter")
                    .cloned()
                    .collect();
                checks.push(Arc::new(QueueCheck(queue.clone())));
                let ops = ops_server(addr, checks, shutdown.clone(), &settings).await?;
                tasks.spawn(ops);
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
    if let Some((bus, _)) = messaging {
        bus.close().await;
    }
    tracing::info!("orderly stopped");
    result
}

/// `orderly keygen`: a new pair for a key rotation; prints the kid it will carry.
async fn keygen(dir: std::path::PathBuf, if_missing: bool) -> Result<()> {
    use orderly_auth::keys::{PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
    let (private, public) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    // Half a pair still fails below: replacing it would orphan issued tokens.
    if if_missing && private.is_file() && public.is_file() {
        println!(
            "kept the existing pair {} and {}",
            private.display(),
            public.display()
        );
        return Ok(());
    }
    let (private, public) =
        tokio::task::spawn_blocking(move || orderly_auth::keys::generate_keypair(&dir))
            .await
            .context("key generation task")??;
    let text = std::fs::read_to_string(&public)
        .with_context(|| format!("cannot read back {}", public.display()))?;
    let kid = orderly_http::token::keys_from_pem_text(&text, &public.display().to_string())?
        .first()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    println!(
        "wrote {} (mode 0600) and {}\nkid: {kid}",
        private.display(),
        public.display()
    );
    Ok(())
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
    settings: orderly_core::config::HttpSettings,
) -> Result<()> {
    server::serve(listener, app, shutdown, &settings)
        .await
        .context("http server")
}

/// `orderly broker`: the embedded broker on the data directory, served over
/// TCP to NATS clients until Ctrl-C.
async fn run_broker(settings: &Settings, shutdown: Shutdown) -> Result<()> {
    let broker = jobs::open_broker(settings).await?;
    let listen = settings
        .broker_listen
        .clone()
        .unwrap_or_else(|| "127.0.0.1:4223".into());
    let listener = orderly_bus::wire::serve(
        broker.clone(),
        orderly_bus::wire::ServerConfig {
            listen,
            ..Default::default()
        },
    )
    .await
    .context("broker listener")?;
    let url = format!("nats://{}", listener.local_addr());
    tracing::info!(%url, "broker listening");
    println!("broker: {url}");
    shutdown.wait().await;
    listener.shutdown().await;
    broker.close().await;
    Ok(())
}

/// The bus and the job queue, each measured whatever its adapter
/// (`bus_*` and `jobs_*` metrics, README "Observability").
async fn open_messaging(settings: &Settings) -> Result<(Arc<dyn Bus>, jobs::QueueParts)> {
    let (bus, mut parts) = open_transports(settings).await?;
    parts.queue = MeteredQueue::wrap(parts.queue);
    Ok((MeteredBus::wrap(bus), parts))
}

/// The bus, and the job queue `JOB_QUEUE` chose (independent of `BUS`).
async fn open_transports(settings: &Settings) -> Result<(Arc<dyn Bus>, jobs::QueueParts)> {
    match settings.bus {
        BusKind::Embedded => {
            let broker = jobs::open_broker(settings).await?;
            let queue = jobs::open_queue(settings, Some(&broker)).await?;
            Ok((Arc::new(broker), queue))
        }
        BusKind::Kafka => {
            // Only events go through Kafka.
            let queue = jobs::open_queue(settings, None).await?;
            let bus = KafkaBus::new(kafka_config(&settings.kafka)).context("Kafka bus")?;
            Ok((Arc::new(bus), queue))
        }
        BusKind::Nats => {
            // Events go through NATS (JetStream for the groups).
            let queue = jobs::open_queue(settings, None).await?;
            let mut config = NatsConfig::new(&settings.nats_url);
            config.client_name = "orderly".into();
            let bus = NatsBus::connect(config)
                .await
                .with_context(|| format!("NATS at {}", settings.nats_url))?;
            Ok((Arc::new(bus), queue))
        }
    }
}

fn kafka_config(s: &KafkaSettings) -> KafkaConfig {
    let mut c = KafkaConfig::new(&s.bootstrap_servers);
    c.topic_partitions = s.topic_partitions;
    c.replication_factor = s.replication_factor;
    c.max_payload = s.max_payload_bytes;
    c.message_timeout = s.message_timeout;
    c.fetch_wait_max = s.fetch_wait_max;
    c.topic_prefix = s.topic_prefix.clone();
    c.group_instance_id = s.group_instance_id.clone();
    c
}

/// How long the first attempt to create the events stream may hold up start.
const FIRST_STREAM_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(3);
const BUS_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Creates the events stream. A broker that cannot be reached does not stop
/// the service (the outbox keeps the events, `/ready` reports the bus): the
/// stream is created in the background once the broker answers.
async fn ensure_events_stream(bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<()> {
    let first = tokio::time::timeout(
        FIRST_STREAM_ATTEMPT,
        bus.ensure_stream(orderly_orders::events::stream()),
    )
    .await
    .unwrap_or_else(|_| Err(BusError::Unavailable("no answer yet".into())));
    match first {
        Ok(()) => return Ok(()),
        Err(BusError::Unavailable(why)) => {
            tracing::warn!(%why, "bus unreachable; orders starts anyway and creates the events stream when it is back");
        }
        Err(e) => return Err(e).context("events stream"),
    }
    tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.wait() => return,
            }
            match bus.ensure_stream(orderly_orders::events::stream()).await {
                Ok(()) => {
                    tracing::info!("events stream ready");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "events stream still unavailable; retrying"),
            }
            backoff = (backoff * 2).min(BUS_RETRY_MAX);
        }
    });
    Ok(())
}

/// The consumer, started again while the bus cannot be reached.
async fn run_consumer(
    bus: Arc<dyn Bus>,
    queue: Arc<dyn JobQueue>,
    shutdown: Shutdown,
) -> Result<()> {
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        match orderly_consumer::run(bus.clone(), queue.clone(), shutdown.clone()).await {
            Ok(()) => return Ok(()),
            Err(BusError::Unavailable(why)) => {
                tracing::warn!(%why, retry_in_s = backoff.as_secs(), "consumer cannot reach the bus; retrying");
            }
            Err(e) => return Err(e).context("consumer"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return Ok(()),
        }
        backoff = (backoff * 2).min(BUS_RETRY_MAX);
    }
}

/// How often the worker's process refreshes `job_queue_depth`.
const QUEUE_DEPTH_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `/health`, `/ready` and `/metrics` on `ORDERLY_OPS_BIND` for a role
/// without an HTTP API; prints `   ops: http://…` once it listens.
async fn ops_server(
    addr: &str,
    checks: Vec<Arc<dyn ReadinessCheck>>,
    shutdown: Shutdown,
    settings: &Settings,
) -> Result<impl Future<Output = Result<()>> + use<>> {
    let listener = server::bind(addr, "ops (ORDERLY_OPS_BIND)").await?;
    if let Ok(a) = listener.local_addr() {
        let host = if a.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            a.ip().to_string()
        };
        let url = format!("http://{host}:{}", a.port());
        tracing::info!(service = "ops", %url, "listening");
        println!("{:>6}: {url}", "ops");
    }
    Ok(http_task(
        listener,
        health::ops_router(checks),
        shutdown,
        settings.http.clone(),
    ))
}

struct QueueCheck(Arc<dyn JobQueue>);

#[async_trait::async_trait]
impl ReadinessCheck for QueueCheck {
    fn name(&self) -> &'static str {
        "job_queue"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.check().await.map_err(|e| e.to_string())
    }
}

/// Orders verifying tokens with the keys at `ORDERS_JWKS_URL`.
struct JwksCheck(Arc<TokenVerifier>);

#[async_trait::async_trait]
impl ReadinessCheck for JwksCheck {
    fn name(&self) -> &'static str {
        "jwks"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.jwks_ready().await
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
