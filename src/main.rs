//! `orderly`: one binary, every role. This file is the command line; what
//! each command starts is in `wiring` (roles) and `cli` (one-shot commands).

mod allocator;
mod cli;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use cli::events::EventsAction;
use cli::jobs::JobsAction;
use cli::user::UserAction;
use wiring::{BrokerFlags, Role};

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
    /// Everything in one process: auth (:8001), orders (:8000), consumer, worker, broker, the console (127.0.0.1:8002/console) (default)
    All {
        #[command(flatten)]
        broker: BrokerFlags,
    },
    /// The auth service: register, tokens, Google login (AUTH_BIND, default 0.0.0.0:8001)
    Auth,
    /// The orders REST API and its outbox relay (ORDERS_BIND, default 0.0.0.0:8000); ORDERS_CONSOLE=on adds the console there for admin accounts
    Orders,
    /// Turns new_order events into process_order jobs
    Consumer,
    /// Runs process_order jobs (simulated payment, then PENDING -> PAID)
    Worker,
    /// Apply database migrations for auth and orders, then exit
    Migrate,
    /// The embedded broker alone, speaking the NATS client protocol (ORDERLY_BROKER_LISTEN, default 127.0.0.1:4223)
    Broker {
        /// Read a password on stdin, print its bcrypt hash for ORDERLY_BROKER_AUTH_FILE, and exit
        #[arg(long)]
        hash_password: bool,
        #[command(flatten)]
        broker: BrokerFlags,
    },
    /// Write a new RS256 token-signing key pair (README, "Key rotation")
    Keygen {
        /// Directory for private.pem (mode 0600) and public.pem; an existing pair is never overwritten
        #[arg(long, default_value = "keys-new")]
        dir: PathBuf,
        /// Keep a complete existing pair and exit 0 (a container's first-start init job)
        #[arg(long)]
        if_missing: bool,
    },
    /// Container health check: exit 0 when every target answers (no curl needed in the image)
    Healthcheck {
        /// http://HOST:PORT/PATH (must answer 200) or tcp://HOST:PORT (must accept);
        /// default: what the role serves, at the binds it reads (AUTH_BIND, ORDERS_BIND,
        /// ORDERLY_OPS_BIND, ORDERLY_BROKER_LISTEN)
        targets: Vec<String>,
        /// The role whose listeners to probe when no target is given; default: the
        /// container's command (PID 1), else all
        #[arg(long)]
        role: Option<String>,
        /// Seconds each target may take
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Inspect the job queue: stats, dead letters, requeue, purge (README, "Job queue on Redis")
    Jobs {
        #[command(subcommand)]
        action: JobsAction,
    },
    /// Dead-lettered events of the bus: list, replay, purge (docs/dead-letters.md)
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
    /// User administration in the auth database
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

fn main() -> ExitCode {
    allocator::tune();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = cli.command.unwrap_or(Command::All {
        broker: BrokerFlags::default(),
    });
    // These answer on stdout only; every other command logs.
    let quiet = matches!(
        command,
        Command::Healthcheck { .. }
            | Command::Broker {
                hash_password: true,
                ..
            }
    );
    let logs = (!quiet).then(|| orderly_core::telemetry::init("info,sqlx=warn"));
    let outcome = runtime.block_on(run(command));
    drop(runtime);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "orderly failed");
            // The log lines first, then the one-line summary after them.
            drop(logs);
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    let mut broker_flags = BrokerFlags::default();
    let role = match command {
        Command::Healthcheck {
            targets,
            role,
            timeout,
        } => {
            let timeout = Duration::from_secs(timeout);
            return cli::healthcheck::run(&targets, role.as_deref(), timeout, wiring::settings)
                .await;
        }
        Command::Keygen { dir, if_missing } => return cli::keygen::run(dir, if_missing).await,
        Command::Jobs { action } => return cli::jobs::run(&wiring::settings()?, &action).await,
        Command::Events { action } => {
            return cli::events::run(&wiring::settings()?, &action).await;
        }
        Command::User { action } => return cli::user::run(&wiring::settings()?, &action).await,
        Command::Migrate => return wiring::migrate(&wiring::settings()?).await,
        Command::Broker {
            hash_password: true,
            ..
        } => return cli::hash_password::run(),
        Command::All { broker } => {
            broker_flags = broker;
            Role::All
        }
        Command::Auth => Role::Auth,
        Command::Orders => Role::Orders,
        Command::Consumer => Role::Consumer,
        Command::Worker => Role::Worker,
        Command::Broker { broker, .. } => {
            broker_flags = broker;
            Role::Broker
        }
    };
    let mut settings = wiring::settings()?;
    broker_flags.apply(&mut settings);
    wiring::run(role, settings).await
}
