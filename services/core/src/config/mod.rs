//! Configuration from the environment (and an optional `.env`), with the old
//! system's variable names. Every name read is in [`VARIABLES`], so deployment
//! files and docs/configuration.md can be checked against what the code
//! actually reads, and an unknown variable can be named at start.
//!
//! One module per section, each with its variables and the piece of
//! [`Settings::from_env`] that reads them.

use std::path::PathBuf;

mod auth;
mod broker;
mod bus;
mod cors;
mod doc;
mod env;
mod http;
mod names;
mod ops;
mod orders;
mod proxies;
mod queue;
mod rate_limit;
mod reconcile;
mod stores;
mod tls;
mod unknown;
mod verifier;
mod worker;

pub use auth::{AuthSettings, GoogleSettings, LoginLimits, TokenFormat};
pub use broker::{BrokerStorage, BrokerSync, DEFAULT_BROKER_SYNC, DEFAULT_DEDUP_WINDOW};
pub use bus::{
    BrokerLimits, BrokerSecurity, BusKind, KafkaSasl, KafkaSecuritySettings, KafkaSettings,
    NatsClientSettings,
};
pub use cors::CorsOrigins;
pub use doc::{REGENERATE as REGENERATE_CONFIGURATION_DOC, configuration_markdown};
pub use env::{ConfigError, Env, Secret, redact_url};
pub use http::HttpSettings;
pub use names::{ENV_NAMES, Section, VARIABLES, Variable};
pub use ops::DEFAULT_ALL_OPS_BIND;
pub use orders::{
    DEFAULT_JWKS_MIN_REFETCH, OrdersSettings, REVOKED_TOKENS_PATH, RevokedTokensSource,
    StatusPolicy, TOKEN_PATH,
};
pub use proxies::{IpRange, TrustedProxies};
pub use queue::{JobQueueKind, JobQueueSettings};
pub use rate_limit::RateLimit;
pub use reconcile::{DEFAULT_RECONCILE_SCHEDULE, ReconcileSettings};
pub use tls::TlsFiles;
pub use unknown::{OWN_PREFIXES, UnknownVariable, unknown_variables};
pub use verifier::VerifierConfig;
pub use worker::WorkerSettings;

/// Everything every role reads, by section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `ORDERLY_DATA_DIR` (default `data`): SQLite files, keys, the embedded broker.
    pub data_dir: PathBuf,
    /// `BUS`: which event bus.
    pub bus: BusKind,
    /// The Kafka cluster, with `BUS=kafka`.
    pub kafka: KafkaSettings,
    /// `BUS=nats`: the server (`NATS_URL`, default nats://127.0.0.1:4222).
    pub nats_url: String,
    /// `NATS_TOKEN`, `NATS_USER`/`NATS_PASSWORD`, `NATS_CA_FILE`…: how a
    /// `BUS=nats` client authenticates and checks the server's TLS.
    pub nats_client: NatsClientSettings,
    /// `ORDERLY_BROKER_LISTEN`: where the embedded broker serves the NATS
    /// protocol (`orderly broker` defaults to 127.0.0.1:4223; `orderly all`
    /// only listens when it is set).
    pub broker_listen: Option<String>,
    /// `ORDERLY_BROKER_MAX_*`: what the broker's NATS listener lets clients take.
    pub broker_limits: BrokerLimits,
    /// `ORDERLY_BROKER_TOKEN`, `_AUTH_FILE`, `_TLS_*`: who may use the
    /// broker's NATS listener, and its TLS.
    pub broker_security: BrokerSecurity,
    /// `ORDERLY_BROKER_SYNC`, `ORDERLY_BROKER_DEDUP_WINDOW_SECONDS`: how the
    /// embedded broker keeps its files.
    pub broker_storage: BrokerStorage,
    /// `ORDERLY_OPS_BIND`: where `/health`, `/ready`, `/metrics` and, in the
    /// roles with the orders database, the console are served (unset:
    /// [`DEFAULT_ALL_OPS_BIND`] for `orderly all`, nowhere for the others).
    pub ops_bind: Option<String>,
    /// `ORDERLY_CONSOLE_TOKEN`: signs in to the console off loopback.
    pub console_token: Option<Secret>,
    /// The auth service.
    pub auth: AuthSettings,
    /// The orders service.
    pub orders: OrdersSettings,
    /// The worker.
    pub worker: WorkerSettings,
    /// The job queue.
    pub jobs: JobQueueSettings,
    /// The reconciler, which runs with the worker.
    pub reconcile: ReconcileSettings,
    /// The HTTP edge shared by auth and orders (CORS, timeouts).
    pub http: HttpSettings,
}

impl Settings {
    /// Read every section; the first bad value fails with its variable named.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(env.value(&["ORDERLY_DATA_DIR"]).unwrap_or("data".into()));
        let bus = bus::bus_kind(env)?;
        let kafka = bus::kafka_settings(env, bus)?;
        let nats_url = bus::nats_url(env);
        let broker_listen = bus::broker_listen(env)?;
        let broker_limits = bus::broker_limits(env)?;
        let broker_security = bus::broker_security(env)?;
        let nats_client = bus::nats_client(env)?;
        let broker_storage = broker::broker_storage(env)?;
        let ops_bind = ops::ops_bind(env)?;
        let console_token = ops::console_token(env);
        let jobs = queue::job_queue_settings(env)?;
        let http = http::http_settings(env)?;
        let auth = auth::auth_settings(env, &data_dir)?;
        let orders = orders::orders_settings(env, &data_dir, &auth.public_key_path)?;
        let worker = worker::worker_settings(env)?;
        let reconcile = reconcile::reconcile_settings(env)?;
        tls::check_postgres_tls(env)?;
        tls::check_redis_tls_used(
            env,
            &jobs.redis_tls,
            &[
                jobs.redis_url.as_ref().map(Secret::expose),
                jobs.results_url.as_ref().map(Secret::expose),
                orders.redis_cache_url.as_ref().map(Secret::expose),
                orders.redis_limiter_url.as_ref().map(Secret::expose),
            ],
        )?;
        Ok(Self {
            data_dir,
            bus,
            kafka,
            nats_url,
            nats_client,
            broker_listen,
            broker_limits,
            broker_security,
            broker_storage,
            ops_bind,
            console_token,
            auth,
            orders,
            worker,
            jobs,
            reconcile,
            http,
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
