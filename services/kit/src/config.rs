//! Configuration from the environment (and an optional `.env`), with the old
//! system's variable names. Every name read is in [`ENV_NAMES`], so deployment
//! files can be checked against what the code actually reads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Every environment variable the configuration reads.
pub const ENV_NAMES: &[&str] = &[
    "ORDERLY_DATA_DIR",
    "BUS",
    "NATS_URL",
    "ORDERLY_BROKER_LISTEN",
    "ORDERLY_OPS_BIND",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC_PARTITIONS",
    "KAFKA_REPLICATION_FACTOR",
    "KAFKA_MAX_PAYLOAD_BYTES",
    "KAFKA_MESSAGE_TIMEOUT_MS",
    "KAFKA_FETCH_WAIT_MAX_MS",
    "KAFKA_TOPIC_PREFIX",
    "KAFKA_GROUP_INSTANCE_ID",
    "AUTH_BIND",
    "AUTH_DATABASE_URL",
    "POSTGRES_USER",
    "POSTGRES_AUTH_HOST",
    "POSTGRES_AUTH_PORT",
    "POSTGRES_AUTH_DB",
    "POSTGRES_AUTH_PASSWORD",
    "AUTH_PRIVATE_KEY_PATH",
    "AUTH_PUBLIC_KEY_PATH",
    "AUTH_ACCESS_TOKEN_EXPIRE_MINUTES",
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    "AUTH_COOKIE_SECURE",
    "AUTH_PREVIOUS_PUBLIC_KEY_PATHS",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_REFRESH_TOKEN_EXPIRE_DAYS",
    "AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT",
    "AUTH_LOGIN_ACCOUNT_WINDOW_SECONDS",
    "AUTH_LOGIN_MAX_FAILURES_PER_IP",
    "AUTH_LOGIN_IP_WINDOW_SECONDS",
    "AUTH_REGISTER_RATE_LIMIT",
    "AUTH_TRUSTED_PROXIES",
    "AUTH_TOKEN_FORMAT",
    "AUTH_PASETO_KEY_PATH",
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URI",
    "GOOGLE_AUTH_URL",
    "GOOGLE_TOKEN_URL",
    // No longer read (the id_token carries the identity); listed so existing
    // deployment files that still set it pass the env-name check.
    "GOOGLE_USERINFO_URL",
    "GOOGLE_JWKS_URL",
    "GOOGLE_ISSUER",
    "ORDERS_BIND",
    "ORDERS_DATABASE_URL",
    "POSTGRES_ORDERS_HOST",
    "POSTGRES_ORDERS_PORT",
    "POSTGRES_ORDERS_DB",
    "POSTGRES_ORDERS_PASSWORD",
    "ORDERS_PUBLIC_KEY_PATH",
    "ORDERS_RATE_LIMIT",
    "ORDERS_TRUSTED_PROXIES",
    "ORDERS_CACHE_TTL_SECONDS",
    "ORDERS_STATUS_POLICY",
    "ORDERS_JWKS_URL",
    "ORDERS_JWKS_MIN_REFETCH_SECONDS",
    "REDIS_URL",
    "ORDERS_REDIS_URL",
    "ORDERS_REDIS_LIMITER_URL",
    "ORDERS_RATE_LIMIT_FAIL_CLOSED",
    "ORDERS_RATE_LIMIT_KEY_PREFIX",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "WORKER_PAYMENT_DELAY_MS",
    "WORKER_CONCURRENCY",
    "WORKER_VISIBILITY_TIMEOUT_SECONDS",
    "JOB_RETRY_BASE_MS",
    "JOB_RETRY_CAP_MS",
    "JOB_MAX_RETRIES",
    "JOB_QUEUE",
    "JOB_QUEUE_PREFIX",
    "JOB_MAX_DELIVERIES",
    "CORS_ALLOWED_ORIGINS",
    "HTTP_HEADER_READ_TIMEOUT_SECONDS",
    "HTTP_BODY_TIMEOUT_SECONDS",
    "HTTP_REQUEST_TIMEOUT_SECONDS",
    "HTTP_WRITE_TIMEOUT_SECONDS",
];

/// A value that never shows in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `url` with its password replaced by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparsable URL>".to_string(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// A snapshot of the variables, looked up by the first name present.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment (call `dotenvy::dotenv()` first to include `.env`).
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of the first of `names` that is set and not empty.
    pub fn get(&self, names: &[&str]) -> Option<(String, String)> {
        debug_assert!(names.iter().all(|n| ENV_NAMES.contains(n)), "{names:?}");
        names.iter().find_map(|n| {
            self.0
                .get(*n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (n.to_string(), v.trim().to_string()))
        })
    }

    fn value(&self, names: &[&str]) -> Option<String> {
        self.get(names).map(|(_, v)| v)
    }

    fn parse<T: std::str::FromStr>(&self, names: &[&str], default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(names) {
            None => Ok(default),
            Some((name, value)) => value.parse().map_err(|e: T::Err| ConfigError::Invalid {
                name,
                value,
                reason: e.to_string(),
            }),
        }
    }

    fn flag(&self, names: &[&str]) -> Result<bool, ConfigError> {
        match self.get(names) {
            None => Ok(false),
            Some((name, value)) => match value.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError::Invalid {
                    name,
                    value,
                    reason: "expected true or false".into(),
                }),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusKind {
    Embedded,
    Kafka,
    /// `NATS_URL`: a NATS server with JetStream (or `orderly broker`).
    Nats,
}

/// `BUS=kafka`: the cluster and how topics are made (defaults when unset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    /// `KAFKA_BOOTSTRAP_SERVERS`; required with `BUS=kafka`.
    pub bootstrap_servers: String,
    pub topic_partitions: i32,
    pub replication_factor: i32,
    pub max_payload_bytes: usize,
    /// How long the producer tries to deliver one message.
    pub message_timeout: Duration,
    /// Longest a consumer's fetch waits at the broker.
    pub fetch_wait_max: Duration,
    /// Before every topic and group name (empty: topic `new_order`).
    pub topic_prefix: String,
    /// Static group membership (`group.instance.id`); unique per process.
    pub group_instance_id: Option<String>,
}

fn kafka_settings(env: &Env, bus: BusKind) -> Result<KafkaSettings, ConfigError> {
    let bootstrap_servers = env.value(&["KAFKA_BOOTSTRAP_SERVERS"]).unwrap_or_default();
    if bus == BusKind::Kafka && bootstrap_servers.is_empty() {
        return Err(invalid(
            "KAFKA_BOOTSTRAP_SERVERS",
            "",
            "BUS=kafka needs the brokers, e.g. KAFKA_BOOTSTRAP_SERVERS=kafka:9092",
        ));
    }
    let at_least_one = |name: &str, default: i32| -> Result<i32, ConfigError> {
        let n: i32 = env.parse(&[name], default)?;
        if n < 1 {
            return Err(invalid(name, &n.to_string(), "must be at least 1"));
        }
        Ok(n)
    };
    Ok(KafkaSettings {
        bootstrap_servers,
        topic_partitions: at_least_one("KAFKA_TOPIC_PARTITIONS", 3)?,
        replication_factor: at_least_one("KAFKA_REPLICATION_FACTOR", 1)?,
        max_payload_bytes: env.parse(&["KAFKA_MAX_PAYLOAD_BYTES"], 1_000_000)?,
        message_timeout: millis(env, &["KAFKA_MESSAGE_TIMEOUT_MS"], 30_000)?,
        fetch_wait_max: millis(env, &["KAFKA_FETCH_WAIT_MAX_MS"], 100)?,
        topic_prefix: env.value(&["KAFKA_TOPIC_PREFIX"]).unwrap_or_default(),
        group_instance_id: env.value(&["KAFKA_GROUP_INSTANCE_ID"]),
    })
}

#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub auth_url: String,
    pub token_url: String,
    /// Where the keys that sign Google's id_tokens are published.
    pub jwks_url: String,
    /// Accepted `iss` values of the id_token.
    pub issuers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub bind: String,
    /// `sqlite://…` or `postgres://…`; may hold a password, hence [`Secret`].
    pub database_url: Secret,
    pub private_key_path: PathBuf,
    pub public_key_path: PathBuf,
    pub access_token_ttl: Duration,
    pub cookie_secure: bool,
    /// `None` when Google login is not configured (its routes answer 503).
    pub google: Option<GoogleSettings>,
    /// Public keys of earlier signing keys, still published in the JWKS while
    /// their tokens may be alive (key rotation).
    pub previous_public_key_paths: Vec<PathBuf>,
    /// `iss`/`aud` put into tokens (and required by verifiers) when set.
    pub verifier: crate::token::VerifierConfig,
    pub refresh_token_ttl: Duration,
    pub login_limits: LoginLimits,
    /// Registrations accepted per client IP (`AUTH_REGISTER_RATE_LIMIT`, default
    /// 30/hour): each one costs an Argon2 hash and creates an account.
    pub register_limit: RateLimit,
    /// Peers whose `X-Forwarded-For` is believed when counting login failures per IP.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// What access tokens are issued as (`AUTH_TOKEN_FORMAT`).
    pub token_format: TokenFormat,
}

/// `jwt` (RS256, the default) or `paseto` (v4.public, Ed25519).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenFormat {
    #[default]
    Jwt,
    /// The Ed25519 secret key lives at `key_path` (`AUTH_PASETO_KEY_PATH`),
    /// generated on first start.
    Paseto { key_path: PathBuf },
}

/// Failed logins allowed per account and per client IP before 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    pub per_account: RateLimit,
    pub per_ip: RateLimit,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_account: RateLimit {
                limit: 5,
                window: Duration::from_secs(15 * 60),
            },
            per_ip: RateLimit {
                limit: 20,
                window: Duration::from_secs(60),
            },
        }
    }
}

/// Who may set which status (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPolicy {
    /// Legacy, opt-in (`ORDERS_STATUS_POLICY=owner`): the owner may make any legal
    /// transition, paying for their own order included (the old system's behaviour).
    Owner,
    /// The default: owners may only cancel; PAID/SHIPPED come from the worker or
    /// the `admin` role.
    Strict,
}

/// `N/second|minute|hour`, e.g. `10/minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = s
            .split_once('/')
            .ok_or("expected N/second, N/minute or N/hour")?;
        let limit: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a whole number"))?;
        if limit == 0 {
            return Err("the limit must be at least 1".into());
        }
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown unit {other:?}")),
        };
        Ok(Self { limit, window })
    }
}

#[derive(Debug, Clone)]
pub struct OrdersSettings {
    pub bind: String,
    /// `sqlite://…` or `postgres://…`; may hold a password, hence [`Secret`].
    pub database_url: Secret,
    pub public_key_path: PathBuf,
    pub rate_limit: RateLimit,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub cache_ttl: Duration,
    pub status_policy: StatusPolicy,
    /// Redis for the order cache (`order:{id}`); `None`: in-process cache.
    pub redis_cache_url: Option<Secret>,
    /// Redis for the rate-limit counters; `None`: in-process limiter.
    pub redis_limiter_url: Option<Secret>,
    /// With Redis unreachable: refuse requests (503) instead of letting them through.
    pub rate_limit_fail_closed: bool,
    /// Prefix of the limiter's Redis keys (lets instances or test runs count apart).
    pub rate_limit_key_prefix: String,
    /// Verify tokens with the keys of this JWKS instead of `public_key_path`.
    pub jwks_url: Option<String>,
    /// An unknown kid refetches the JWKS at most once per this interval.
    pub jwks_min_refetch: Duration,
    /// `AUTH_ISSUER`/`AUTH_AUDIENCE`: required in tokens when set.
    pub verifier: crate::token::VerifierConfig,
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub payment_delay: Duration,
    pub concurrency: usize,
    pub visibility_timeout: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub max_retries: u32,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub bus: BusKind,
    pub kafka: KafkaSettings,
    /// `BUS=nats`: the server (`NATS_URL`, default nats://127.0.0.1:4222).
    pub nats_url: String,
    /// `ORDERLY_BROKER_LISTEN`: where the embedded broker serves the NATS
    /// protocol (`orderly broker` defaults to 127.0.0.1:4223; `orderly all`
    /// only listens when it is set).
    pub broker_listen: Option<String>,
    /// `ORDERLY_OPS_BIND`: where `orderly consumer` and `orderly worker`, which
    /// have no HTTP API, serve `/health`, `/ready` and `/metrics` (unset: nowhere).
    pub ops_bind: Option<String>,
    pub auth: AuthSettings,
    pub orders: OrdersSettings,
    pub worker: WorkerSettings,
    pub jobs: JobQueueSettings,
    /// The HTTP edge shared by auth and orders (CORS, timeouts).
    pub http: HttpSettings,
}

/// What `kit::http` wraps around both services: which browser origins may call
/// them, and how long a client may take before the server gives up on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `CORS_ALLOWED_ORIGINS` (default: localhost origins only).
    pub cors: crate::cors::CorsOrigins,
    /// From accepting a connection (or the end of the last response on a
    /// kept-alive one) to the last byte of the request headers; then closed.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body (408).
    pub body_timeout: Duration,
    /// Longest a response may wait for the client to accept more of it;
    /// then the connection is closed.
    pub write_timeout: Duration,
    /// Longest a whole request may take (503; 408 if the body was still coming).
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            cors: crate::cors::CorsOrigins::default(),
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

fn http_settings(env: &Env) -> Result<HttpSettings, ConfigError> {
    let defaults = HttpSettings::default();
    let cors = match env.get(&["CORS_ALLOWED_ORIGINS"]) {
        None => defaults.cors,
        Some((name, value)) => {
            crate::cors::CorsOrigins::parse(&value).map_err(|why| invalid(&name, &value, why))?
        }
    };
    let seconds = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
        positive(env, name, default.as_secs()).map(Duration::from_secs)
    };
    Ok(HttpSettings {
        cors,
        header_read_timeout: seconds(
            "HTTP_HEADER_READ_TIMEOUT_SECONDS",
            defaults.header_read_timeout,
        )?,
        body_timeout: seconds("HTTP_BODY_TIMEOUT_SECONDS", defaults.body_timeout)?,
        request_timeout: seconds("HTTP_REQUEST_TIMEOUT_SECONDS", defaults.request_timeout)?,
        write_timeout: seconds("HTTP_WRITE_TIMEOUT_SECONDS", defaults.write_timeout)?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobQueueKind {
    /// On the embedded broker, in the data directory.
    Embedded,
    /// Redis Streams (`adapters/redis`).
    Redis,
}

/// The job queue, chosen independently of the bus (`JOB_QUEUE`).
#[derive(Debug, Clone)]
pub struct JobQueueSettings {
    pub kind: JobQueueKind,
    /// The queue's Redis (DB 0): `CELERY_BROKER_URL`, else `REDIS_URL`, else `ORDERS_REDIS_URL`.
    pub redis_url: Option<Secret>,
    /// Results of finished jobs: `CELERY_RESULT_BACKEND`, else DB 1 of the queue's Redis.
    pub results_url: Option<Secret>,
    /// First part of the queue's Redis keys (`JOB_QUEUE_PREFIX`, default `orderly`).
    pub prefix: String,
    /// Deliveries without an ack or failure before a job is poison (`JOB_MAX_DELIVERIES`).
    pub max_deliveries: u32,
}

/// `JOB_QUEUE=embedded|redis`; unset: redis when a Redis URL for it is set.
fn job_queue_settings(env: &Env) -> Result<JobQueueSettings, ConfigError> {
    let url = redis_url(env, &["CELERY_BROKER_URL", "REDIS_URL", "ORDERS_REDIS_URL"])?;
    let kind = match env.get(&["JOB_QUEUE"]) {
        None if url.is_some() => JobQueueKind::Redis,
        None => JobQueueKind::Embedded,
        Some((_, v)) if v == "embedded" => JobQueueKind::Embedded,
        Some((name, v)) if v == "redis" => {
            if url.is_none() {
                return Err(invalid(
                    &name,
                    &v,
                    "needs the queue's Redis: set REDIS_URL (or CELERY_BROKER_URL)",
                ));
            }
            JobQueueKind::Redis
        }
        Some((name, v)) => return Err(invalid(&name, &v, "expected embedded or redis")),
    };
    let results = match redis_url(env, &["CELERY_RESULT_BACKEND"])? {
        Some((_, u)) => Some(u),
        None => url.as_ref().map(|(_, u)| with_redis_db(u, 1)),
    };
    let prefix = env
        .value(&["JOB_QUEUE_PREFIX"])
        .unwrap_or_else(|| "orderly".into());
    if prefix.contains(char::is_whitespace) {
        return Err(invalid("JOB_QUEUE_PREFIX", &prefix, "no spaces"));
    }
    let max_deliveries: u32 = env.parse(&["JOB_MAX_DELIVERIES"], 4)?;
    if max_deliveries == 0 {
        return Err(invalid("JOB_MAX_DELIVERIES", "0", "must be at least 1"));
    }
    Ok(JobQueueSettings {
        kind,
        redis_url: url.map(|(_, u)| Secret::new(u.to_string())),
        results_url: results.map(|u| Secret::new(u.to_string())),
        prefix,
        max_deliveries,
    })
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The variables of one service's PostgreSQL parts.
struct PgParts<'a> {
    url: &'a str,
    host: &'a str,
    port: &'a str,
    db: &'a str,
    password: &'a str,
    default_db: &'a str,
}

/// A database URL: the whole-URL variable wins; then the PostgreSQL parts (any of
/// host/port/db/password set selects PostgreSQL); else SQLite in the data dir.
fn database_url(env: &Env, vars: PgParts<'_>, sqlite_file: PathBuf) -> Result<Secret, ConfigError> {
    if let Some((name, url)) = env.get(&[vars.url]) {
        let parsed =
            url::Url::parse(&url).map_err(|e| invalid(&name, &redact_url(&url), e.to_string()))?;
        return match parsed.scheme() {
            "sqlite" | "postgres" | "postgresql" => Ok(Secret::new(url)),
            other => Err(invalid(
                &name,
                &redact_url(&url),
                format!("unknown scheme {other:?} (expected postgres:// or sqlite://)"),
            )),
        };
    }
    if [vars.host, vars.port, vars.db, vars.password]
        .iter()
        .all(|v| env.get(&[v]).is_none())
    {
        return Ok(Secret::new(format!(
            "sqlite://{}?mode=rwc",
            sqlite_file.display()
        )));
    }
    let host = env
        .value(&[vars.host])
        .unwrap_or_else(|| "localhost".into());
    let port: u16 = env.parse(&[vars.port], 5432)?;
    let user = env
        .value(&["POSTGRES_USER"])
        .unwrap_or_else(|| "postgres".into());
    let db = env
        .value(&[vars.db])
        .unwrap_or_else(|| vars.default_db.into());
    let mut url = url::Url::parse("postgres://localhost/")
        .map_err(|e| invalid(vars.host, &host, e.to_string()))?;
    url.set_host(Some(&host))
        .map_err(|e| invalid(vars.host, &host, e.to_string()))?;
    let _ = url.set_port(Some(port));
    // `set_username`/`set_password` percent-encode, so any password works.
    let _ = url.set_username(&user);
    if let Some(password) = env.value(&[vars.password]) {
        let _ = url.set_password(Some(&password));
    }
    url.set_path(&format!("/{db}"));
    Ok(Secret::new(url.to_string()))
}

/// A Redis URL setting: `redis://` or `unix://` (no TLS in this build).
fn redis_url(env: &Env, names: &[&str]) -> Result<Option<(String, url::Url)>, ConfigError> {
    let Some((name, value)) = env.get(names) else {
        return Ok(None);
    };
    let parsed =
        url::Url::parse(&value).map_err(|e| invalid(&name, &redact_url(&value), e.to_string()))?;
    match parsed.scheme() {
        "redis" | "unix" | "redis+unix" => Ok(Some((name, parsed))),
        other => Err(invalid(
            &name,
            &redact_url(&value),
            format!("unknown scheme {other:?} (expected redis:// or unix://)"),
        )),
    }
}

/// The same server as `url`, database `db` (the old layout: cache 0, results 1, limiter 2).
fn with_redis_db(url: &url::Url, db: u8) -> url::Url {
    let mut url = url.clone();
    if url.scheme() == "redis" {
        url.set_path(&format!("/{db}"));
    } else {
        let others: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "db")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(others)
            .append_pair("db", &db.to_string());
    }
    url
}

fn bind_addr(env: &Env, var: &str, default: &str) -> Result<String, ConfigError> {
    match env.get(&[var]) {
        None => Ok(default.to_string()),
        Some((name, value)) => value
            .parse::<std::net::SocketAddr>()
            .map(|_| value.clone())
            .map_err(|_| invalid(&name, &value, "expected HOST:PORT, e.g. 0.0.0.0:8000")),
    }
}

/// A whole number of at least 1.
fn positive(env: &Env, name: &str, default: u64) -> Result<u64, ConfigError> {
    let value: u64 = env.parse(&[name], default)?;
    if value == 0 {
        return Err(invalid(name, "0", "must be at least 1"));
    }
    Ok(value)
}

/// Comma-separated IP addresses.
fn ip_list(env: &Env, name: &str) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let Some((name, value)) = env.get(&[name]) else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| invalid(&name, &value, format!("{s:?} is not an IP address")))
        })
        .collect()
}

/// Shared by auth (puts them in tokens) and orders (requires them).
fn verifier_config(env: &Env) -> crate::token::VerifierConfig {
    crate::token::VerifierConfig {
        issuer: env.value(&["AUTH_ISSUER"]),
        audience: env.value(&["AUTH_AUDIENCE"]),
    }
}

fn millis(env: &Env, names: &[&str], default: u64) -> Result<Duration, ConfigError> {
    env.parse(names, default).map(Duration::from_millis)
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(env.value(&["ORDERLY_DATA_DIR"]).unwrap_or("data".into()));

        let bus = match env.get(&["BUS"]) {
            None => BusKind::Embedded,
            Some((_, v)) if v == "embedded" => BusKind::Embedded,
            Some((_, v)) if v == "kafka" => BusKind::Kafka,
            Some((_, v)) if v == "nats" => BusKind::Nats,
            Some((name, v)) => return Err(invalid(&name, &v, "expected embedded, kafka or nats")),
        };
        let kafka = kafka_settings(env, bus)?;
        let nats_url = env
            .value(&["NATS_URL"])
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let broker_listen = match env.get(&["ORDERLY_BROKER_LISTEN"]) {
            Some(_) => Some(bind_addr(env, "ORDERLY_BROKER_LISTEN", "127.0.0.1:4223")?),
            None => None,
        };
        let ops_bind = match env.get(&["ORDERLY_OPS_BIND"]) {
            Some(_) => Some(bind_addr(env, "ORDERLY_OPS_BIND", "0.0.0.0:9090")?),
            None => None,
        };
        let jobs = job_queue_settings(env)?;
        let http = http_settings(env)?;

        let keys = data_dir.join("keys");
        let private_key_path = env
            .value(&["AUTH_PRIVATE_KEY_PATH"])
            .map(PathBuf::from)
            .unwrap_or_else(|| keys.join("private.pem"));
        let public_key_path = env
            .value(&["AUTH_PUBLIC_KEY_PATH"])
            .map(PathBuf::from)
            .unwrap_or_else(|| keys.join("public.pem"));
        let ttl_minutes: u64 = env.parse(
            &[
                "AUTH_ACCESS_TOKEN_EXPIRE_MINUTES",
                "ACCESS_TOKEN_EXPIRE_MINUTES",
            ],
            30,
        )?;
        if ttl_minutes == 0 {
            return Err(invalid(
                "AUTH_ACCESS_TOKEN_EXPIRE_MINUTES",
                "0",
                "must be at least 1",
            ));
        }
        let google = match (
            env.value(&["GOOGLE_CLIENT_ID"]),
            env.value(&["GOOGLE_CLIENT_SECRET"]),
        ) {
            (Some(client_id), Some(secret)) => Some(GoogleSettings {
                client_id,
                client_secret: Secret::new(secret),
                redirect_uri: env
                    .value(&["GOOGLE_REDIRECT_URI"])
                    .unwrap_or("http://localhost:8001/auth/callback/google".into()),
                auth_url: env
                    .value(&["GOOGLE_AUTH_URL"])
                    .unwrap_or("https://accounts.google.com/o/oauth2/v2/auth".into()),
                token_url: env
                    .value(&["GOOGLE_TOKEN_URL"])
                    .unwrap_or("https://oauth2.googleapis.com/token".into()),
                jwks_url: env
                    .value(&["GOOGLE_JWKS_URL"])
                    .unwrap_or("https://www.googleapis.com/oauth2/v3/certs".into()),
                // Google documents both spellings of its issuer.
                issuers: match env.value(&["GOOGLE_ISSUER"]) {
                    Some(issuer) => vec![issuer],
                    None => vec![
                        "https://accounts.google.com".into(),
                        "accounts.google.com".into(),
                    ],
                },
            }),
            _ => None,
        };
        let auth = AuthSettings {
            bind: bind_addr(env, "AUTH_BIND", "0.0.0.0:8001")?,
            database_url: database_url(
                env,
                PgParts {
                    url: "AUTH_DATABASE_URL",
                    host: "POSTGRES_AUTH_HOST",
                    port: "POSTGRES_AUTH_PORT",
                    db: "POSTGRES_AUTH_DB",
                    password: "POSTGRES_AUTH_PASSWORD",
                    default_db: "authdb",
                },
                data_dir.join("auth.db"),
            )?,
            private_key_path,
            public_key_path: public_key_path.clone(),
            access_token_ttl: Duration::from_secs(ttl_minutes * 60),
            cookie_secure: env.flag(&["AUTH_COOKIE_SECURE"])?,
            google,
            previous_public_key_paths: env
                .value(&["AUTH_PREVIOUS_PUBLIC_KEY_PATHS"])
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            verifier: verifier_config(env),
            token_format: match env.value(&["AUTH_TOKEN_FORMAT"]).as_deref() {
                None | Some("jwt") => TokenFormat::Jwt,
                Some("paseto") => TokenFormat::Paseto {
                    key_path: env
                        .value(&["AUTH_PASETO_KEY_PATH"])
                        .map(PathBuf::from)
                        .unwrap_or_else(|| keys.join("paseto.key")),
                },
                Some(other) => {
                    return Err(invalid("AUTH_TOKEN_FORMAT", other, "must be jwt or paseto"));
                }
            },
            refresh_token_ttl: Duration::from_secs(
                positive(env, "AUTH_REFRESH_TOKEN_EXPIRE_DAYS", 14)? * 86_400,
            ),
            login_limits: LoginLimits {
                per_account: RateLimit {
                    limit: u32::try_from(positive(env, "AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)?)
                        .unwrap_or(u32::MAX),
                    window: Duration::from_secs(positive(
                        env,
                        "AUTH_LOGIN_ACCOUNT_WINDOW_SECONDS",
                        900,
                    )?),
                },
                per_ip: RateLimit {
                    limit: u32::try_from(positive(env, "AUTH_LOGIN_MAX_FAILURES_PER_IP", 20)?)
                        .unwrap_or(u32::MAX),
                    window: Duration::from_secs(positive(env, "AUTH_LOGIN_IP_WINDOW_SECONDS", 60)?),
                },
            },
            register_limit: env.parse(
                &["AUTH_REGISTER_RATE_LIMIT"],
                RateLimit {
                    limit: 30,
                    window: Duration::from_secs(3600),
                },
            )?,
            trusted_proxies: ip_list(env, "AUTH_TRUSTED_PROXIES")?,
        };

        let trusted_proxies = match env.get(&["ORDERS_TRUSTED_PROXIES"]) {
            None => Vec::new(),
            Some((name, value)) => value
                .split(',')
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|_| invalid(&name, &value, format!("{s:?} is not an IP address")))
                })
                .collect::<Result<_, _>>()?,
        };
        let status_policy = match env.get(&["ORDERS_STATUS_POLICY"]) {
            None => StatusPolicy::Strict,
            Some((_, v)) if v == "owner" => StatusPolicy::Owner,
            Some((_, v)) if v == "strict" => StatusPolicy::Strict,
            Some((name, v)) => return Err(invalid(&name, &v, "expected owner or strict")),
        };
        // The more specific name wins: ORDERS_REDIS_URL lets orders use another
        // Redis than the job queue's REDIS_URL.
        let redis_cache = redis_url(env, &["ORDERS_REDIS_URL", "REDIS_URL"])?;
        let redis_limiter = match redis_url(env, &["ORDERS_REDIS_LIMITER_URL"])? {
            Some((_, url)) => Some(url),
            None => redis_cache.as_ref().map(|(_, url)| with_redis_db(url, 2)),
        };
        let orders = OrdersSettings {
            bind: bind_addr(env, "ORDERS_BIND", "0.0.0.0:8000")?,
            database_url: database_url(
                env,
                PgParts {
                    url: "ORDERS_DATABASE_URL",
                    host: "POSTGRES_ORDERS_HOST",
                    port: "POSTGRES_ORDERS_PORT",
                    db: "POSTGRES_ORDERS_DB",
                    password: "POSTGRES_ORDERS_PASSWORD",
                    default_db: "ordersdb",
                },
                data_dir.join("orders.db"),
            )?,
            public_key_path: env
                .value(&["ORDERS_PUBLIC_KEY_PATH"])
                .map(PathBuf::from)
                .unwrap_or(public_key_path),
            rate_limit: env.parse(
                &["ORDERS_RATE_LIMIT"],
                RateLimit {
                    limit: 10,
                    window: Duration::from_secs(60),
                },
            )?,
            trusted_proxies,
            cache_ttl: Duration::from_secs(env.parse(&["ORDERS_CACHE_TTL_SECONDS"], 300)?),
            status_policy,
            redis_cache_url: redis_cache.map(|(_, url)| Secret::new(url.to_string())),
            redis_limiter_url: redis_limiter.map(|url| Secret::new(url.to_string())),
            rate_limit_fail_closed: env.flag(&["ORDERS_RATE_LIMIT_FAIL_CLOSED"])?,
            rate_limit_key_prefix: env
                .value(&["ORDERS_RATE_LIMIT_KEY_PREFIX"])
                .unwrap_or_else(|| "rate_limit:".into()),
            jwks_url: match env.get(&["ORDERS_JWKS_URL"]) {
                None => None,
                Some((name, value)) => match url::Url::parse(&value) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => Some(value),
                    _ => return Err(invalid(&name, &value, "expected an http(s):// URL")),
                },
            },
            jwks_min_refetch: Duration::from_secs(env.parse(
                &["ORDERS_JWKS_MIN_REFETCH_SECONDS"],
                crate::token::DEFAULT_JWKS_MIN_REFETCH.as_secs(),
            )?),
            verifier: verifier_config(env),
        };

        let concurrency: usize = env.parse(&["WORKER_CONCURRENCY"], 4)?;
        if concurrency == 0 {
            return Err(invalid("WORKER_CONCURRENCY", "0", "must be at least 1"));
        }
        let worker = WorkerSettings {
            payment_delay: millis(env, &["WORKER_PAYMENT_DELAY_MS"], 2000)?,
            concurrency,
            visibility_timeout: Duration::from_secs(
                env.parse(&["WORKER_VISIBILITY_TIMEOUT_SECONDS"], 30)?,
            ),
            retry_base: millis(env, &["JOB_RETRY_BASE_MS"], 1000)?,
            retry_cap: millis(env, &["JOB_RETRY_CAP_MS"], 60_000)?,
            max_retries: env.parse(&["JOB_MAX_RETRIES"], 3)?,
        };

        Ok(Self {
            data_dir,
            bus,
            kafka,
            nats_url,
            broker_listen,
            ops_bind,
            auth,
            orders,
            worker,
            jobs,
            http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_means_everything_embedded_on_default_ports() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.auth.bind, "0.0.0.0:8001");
        assert_eq!(s.orders.bind, "0.0.0.0:8000");
        assert_eq!(
            s.auth.database_url.expose(),
            "sqlite://data/auth.db?mode=rwc"
        );
        assert!(s.orders.redis_cache_url.is_none());
        assert!(s.orders.redis_limiter_url.is_none());
        assert!(!s.orders.rate_limit_fail_closed);
        assert_eq!(s.orders.rate_limit.limit, 10);
        assert_eq!(s.auth.access_token_ttl, Duration::from_secs(1800));
        assert!(s.auth.google.is_none());
    }

    #[test]
    fn google_defaults_to_googles_oidc_endpoints_and_both_issuer_spellings() {
        let env = Env::from_pairs([("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")]);
        let google = Settings::from_env(&env).unwrap().auth.google.unwrap();
        assert_eq!(
            google.jwks_url,
            "https://www.googleapis.com/oauth2/v3/certs"
        );
        assert_eq!(
            google.issuers,
            ["https://accounts.google.com", "accounts.google.com"]
        );

        let env = Env::from_pairs([
            ("GOOGLE_CLIENT_ID", "id"),
            ("GOOGLE_CLIENT_SECRET", "s"),
            ("GOOGLE_JWKS_URL", "http://fake/certs"),
            ("GOOGLE_ISSUER", "http://fake"),
        ]);
        let google = Settings::from_env(&env).unwrap().auth.google.unwrap();
        assert_eq!(google.jwks_url, "http://fake/certs");
        assert_eq!(google.issuers, ["http://fake"]);
    }

    #[test]
    fn the_token_format_is_jwt_unless_paseto_is_asked_for() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.auth.token_format, TokenFormat::Jwt);
        let env = Env::from_pairs([
            ("AUTH_TOKEN_FORMAT", "paseto"),
            ("AUTH_PASETO_KEY_PATH", "/k/p.key"),
        ]);
        assert_eq!(
            Settings::from_env(&env).unwrap().auth.token_format,
            TokenFormat::Paseto {
                key_path: "/k/p.key".into()
            }
        );
        let e = Settings::from_env(&Env::from_pairs([("AUTH_TOKEN_FORMAT", "saml")])).unwrap_err();
        assert!(e.to_string().contains("AUTH_TOKEN_FORMAT"), "{e}");
    }

    #[test]
    fn bus_kafka_reads_its_settings_and_needs_the_brokers() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.bus, BusKind::Embedded);
        assert_eq!(s.kafka.topic_partitions, 3);
        assert_eq!(s.kafka.replication_factor, 1);

        let e = Settings::from_env(&Env::from_pairs([("BUS", "kafka")])).unwrap_err();
        assert!(e.to_string().contains("KAFKA_BOOTSTRAP_SERVERS"), "{e}");

        let env = Env::from_pairs([
            ("BUS", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"),
            ("KAFKA_TOPIC_PARTITIONS", "6"),
            ("KAFKA_REPLICATION_FACTOR", "3"),
            ("KAFKA_MESSAGE_TIMEOUT_MS", "5000"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.bus, BusKind::Kafka);
        assert_eq!(s.kafka.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(
            (s.kafka.topic_partitions, s.kafka.replication_factor),
            (6, 3)
        );
        assert_eq!(s.kafka.message_timeout, Duration::from_secs(5));

        let zero = Env::from_pairs([
            ("BUS", "kafka"),
            ("KAFKA_BOOTSTRAP_SERVERS", "k:9092"),
            ("KAFKA_TOPIC_PARTITIONS", "0"),
        ]);
        assert!(Settings::from_env(&zero).is_err());
    }

    #[test]
    fn the_old_token_lifetime_name_is_an_alias() {
        let env = Env::from_pairs([("ACCESS_TOKEN_EXPIRE_MINUTES", "5")]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.auth.access_token_ttl, Duration::from_secs(300));
    }

    #[test]
    fn a_bad_value_names_the_variable() {
        let env = Env::from_pairs([("ORDERS_BIND", "localhost")]);
        let err = Settings::from_env(&env).unwrap_err().to_string();
        assert!(err.starts_with("ORDERS_BIND="), "{err}");
        let env = Env::from_pairs([("ORDERS_RATE_LIMIT", "ten")]);
        assert!(Settings::from_env(&env).is_err());
    }

    #[test]
    fn the_ops_endpoint_is_off_unless_an_address_is_set() {
        let none = Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", " ")])).unwrap();
        assert_eq!(none.ops_bind, None);
        let set =
            Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", "127.0.0.1:0")])).unwrap();
        assert_eq!(set.ops_bind.as_deref(), Some("127.0.0.1:0"));
        let err = Settings::from_env(&Env::from_pairs([("ORDERLY_OPS_BIND", "9090")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("ORDERLY_OPS_BIND="), "{err}");
    }

    #[test]
    fn postgres_parts_make_a_url_with_the_password_encoded_and_hidden() {
        let env = Env::from_pairs([
            ("POSTGRES_USER", "orders user"),
            ("POSTGRES_ORDERS_HOST", "db.internal"),
            ("POSTGRES_ORDERS_PASSWORD", "p@ss:w/rd"),
            ("POSTGRES_AUTH_HOST", "authdb.internal"),
            ("POSTGRES_AUTH_PORT", "6543"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(
            s.orders.database_url.expose(),
            "postgres://orders%20user:p%40ss%3Aw%2Frd@db.internal:5432/ordersdb"
        );
        assert_eq!(
            s.auth.database_url.expose(),
            "postgres://orders%20user@authdb.internal:6543/authdb"
        );
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("p%40ss") && !shown.contains("p@ss"),
            "{shown}"
        );
        assert_eq!(
            redact_url(s.orders.database_url.expose()),
            "postgres://orders%20user:***@db.internal:5432/ordersdb"
        );
    }

    #[test]
    fn a_whole_database_url_wins_over_the_parts() {
        let env = Env::from_pairs([
            ("ORDERS_DATABASE_URL", "postgresql://u:pw@h/orders"),
            ("POSTGRES_ORDERS_HOST", "ignored"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.orders.database_url.expose(), "postgresql://u:pw@h/orders");
        let env = Env::from_pairs([("AUTH_DATABASE_URL", "mysql://u:secret@h/db")]);
        let err = Settings::from_env(&env).unwrap_err().to_string();
        assert!(err.starts_with("AUTH_DATABASE_URL="), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn redis_url_is_the_cache_and_database_2_of_it_the_limiter() {
        let env = Env::from_pairs([("REDIS_URL", "redis://:pw@cache:6379/0")]);
        let s = Settings::from_env(&env).unwrap();
        let cache = s.orders.redis_cache_url.unwrap();
        assert_eq!(cache.expose(), "redis://:pw@cache:6379/0");
        assert_eq!(
            s.orders.redis_limiter_url.unwrap().expose(),
            "redis://:pw@cache:6379/2"
        );
        let env = Env::from_pairs([
            ("REDIS_URL", "redis://queue:6379"),
            ("ORDERS_REDIS_URL", "redis://cache:6379"),
            ("ORDERS_REDIS_LIMITER_URL", "redis://limits:6379/5"),
            ("ORDERS_RATE_LIMIT_FAIL_CLOSED", "true"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(
            s.orders.redis_cache_url.unwrap().expose(),
            "redis://cache:6379"
        );
        assert_eq!(
            s.orders.redis_limiter_url.unwrap().expose(),
            "redis://limits:6379/5"
        );
        assert!(s.orders.rate_limit_fail_closed);
        let env = Env::from_pairs([("REDIS_URL", "http://cache")]);
        assert!(Settings::from_env(&env).is_err());
    }

    #[test]
    fn the_job_queue_follows_the_redis_url_unless_chosen() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.jobs.kind, JobQueueKind::Embedded);
        assert!(s.jobs.redis_url.is_none());

        let env = Env::from_pairs([("REDIS_URL", "redis://cache:6379/0")]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.jobs.kind, JobQueueKind::Redis);
        assert_eq!(s.jobs.redis_url.unwrap().expose(), "redis://cache:6379/0");
        assert_eq!(s.jobs.results_url.unwrap().expose(), "redis://cache:6379/1");
        assert_eq!(s.jobs.prefix, "orderly");
        assert_eq!(s.jobs.max_deliveries, 4);

        let env = Env::from_pairs([
            ("REDIS_URL", "redis://cache:6379/0"),
            ("JOB_QUEUE", "embedded"),
        ]);
        assert_eq!(
            Settings::from_env(&env).unwrap().jobs.kind,
            JobQueueKind::Embedded
        );

        // The old compose file's names.
        let env = Env::from_pairs([
            ("CELERY_BROKER_URL", "redis://broker:6379/0"),
            ("CELERY_RESULT_BACKEND", "redis://results:6379/3"),
            ("REDIS_URL", "redis://cache:6379/0"),
            ("JOB_QUEUE_PREFIX", "run-7"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.jobs.kind, JobQueueKind::Redis);
        assert_eq!(s.jobs.redis_url.unwrap().expose(), "redis://broker:6379/0");
        assert_eq!(
            s.jobs.results_url.unwrap().expose(),
            "redis://results:6379/3"
        );
        assert_eq!(s.jobs.prefix, "run-7");

        let err = Settings::from_env(&Env::from_pairs([("JOB_QUEUE", "redis")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("JOB_QUEUE=") && err.contains("REDIS_URL"),
            "{err}"
        );
        assert!(Settings::from_env(&Env::from_pairs([("JOB_QUEUE", "sqs")])).is_err());
    }

    #[test]
    fn auth_hardening_settings_have_defaults_and_are_read() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(14 * 86_400));
        assert_eq!(s.auth.login_limits, LoginLimits::default());
        assert_eq!(s.auth.register_limit.limit, 30);
        assert_eq!(s.auth.register_limit.window, Duration::from_secs(3600));
        assert_eq!(s.orders.status_policy, StatusPolicy::Strict);
        assert_eq!(s.auth.verifier, crate::token::VerifierConfig::default());
        assert!(s.orders.jwks_url.is_none());
        let env = Env::from_pairs([
            ("AUTH_ISSUER", "https://auth.test"),
            ("AUTH_AUDIENCE", "orders"),
            ("AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "2"),
            ("AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"),
            ("AUTH_LOGIN_IP_WINDOW_SECONDS", "30"),
            ("AUTH_PREVIOUS_PUBLIC_KEY_PATHS", "a.pem, b.pem"),
            ("AUTH_TRUSTED_PROXIES", "10.0.0.1"),
            ("AUTH_REGISTER_RATE_LIMIT", "3/minute"),
            ("ORDERS_JWKS_URL", "http://auth:8001/.well-known/jwks.json"),
            ("ORDERS_STATUS_POLICY", "owner"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(s.auth.verifier.issuer.as_deref(), Some("https://auth.test"));
        assert_eq!(s.orders.verifier, s.auth.verifier);
        assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(s.auth.login_limits.per_account.limit, 3);
        assert_eq!(s.auth.login_limits.per_ip.window, Duration::from_secs(30));
        assert_eq!(s.auth.previous_public_key_paths.len(), 2);
        assert_eq!(s.auth.trusted_proxies.len(), 1);
        assert_eq!(s.auth.register_limit.limit, 3);
        assert_eq!(s.orders.status_policy, StatusPolicy::Owner);
        assert!(s.orders.jwks_url.is_some());
        for bad in [
            ("ORDERS_JWKS_URL", "ftp://x"),
            ("AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "0"),
            ("AUTH_TRUSTED_PROXIES", "nope"),
            ("AUTH_REGISTER_RATE_LIMIT", "0/hour"),
            ("ORDERS_STATUS_POLICY", "anyone"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([bad])).unwrap_err();
            assert!(err.to_string().starts_with(bad.0), "{err}");
        }
    }

    #[test]
    fn the_http_edge_defaults_to_localhost_cors_and_bounded_clients() {
        let s = Settings::from_env(&Env::default()).unwrap();
        assert_eq!(s.http, HttpSettings::default());
        assert_eq!(s.http.cors, crate::cors::CorsOrigins::Localhost);
        assert_eq!(s.http.header_read_timeout, Duration::from_secs(10));
        let env = Env::from_pairs([
            (
                "CORS_ALLOWED_ORIGINS",
                "https://shop.example.com, http://localhost:3000",
            ),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "2"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "3"),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", "4"),
            ("HTTP_WRITE_TIMEOUT_SECONDS", "5"),
        ]);
        let s = Settings::from_env(&env).unwrap();
        assert_eq!(
            s.http.cors,
            crate::cors::CorsOrigins::List(vec![
                "https://shop.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        assert_eq!(
            (
                s.http.header_read_timeout,
                s.http.body_timeout,
                s.http.request_timeout,
                s.http.write_timeout
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(3),
                Duration::from_secs(4),
                Duration::from_secs(5)
            )
        );
        let any = Env::from_pairs([("CORS_ALLOWED_ORIGINS", "*")]);
        assert_eq!(
            Settings::from_env(&any).unwrap().http.cors,
            crate::cors::CorsOrigins::Any
        );
    }

    #[test]
    fn a_bad_http_edge_setting_fails_with_one_line_naming_it() {
        for bad in [
            ("CORS_ALLOWED_ORIGINS", "https://shop.example.com/app"),
            ("CORS_ALLOWED_ORIGINS", "ftp://shop.example.com"),
            ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
            ("CORS_ALLOWED_ORIGINS", "*,https://a.example"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "0"),
            ("HTTP_BODY_TIMEOUT_SECONDS", "soon"),
            ("HTTP_REQUEST_TIMEOUT_SECONDS", "-1"),
            ("HTTP_WRITE_TIMEOUT_SECONDS", "0"),
        ] {
            let err = Settings::from_env(&Env::from_pairs([bad]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{}=", bad.0)), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            "100/second".parse::<RateLimit>().unwrap(),
            RateLimit {
                limit: 100,
                window: Duration::from_secs(1)
            }
        );
        assert!("0/minute".parse::<RateLimit>().is_err());
    }
}
