//! Every environment variable orderly reads, in one table: the name, its
//! default and what it does. The configuration only looks up names in it, the
//! unknown-variable warning compares the environment with it, deployment files
//! are checked against it, and docs/configuration.md is generated from it
//! (`cargo run -p orderly-core --example configuration-doc`).
//!
//! A new variable is one more line here (then regenerate the doc); a test
//! fails until both are done.

/// One variable orderly reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// The name, as set in the environment.
    pub name: &'static str,
    /// The documentation's heading it is listed under.
    pub section: Section,
    /// What applies when it is unset or empty (Markdown).
    pub default: &'static str,
    /// What it does (Markdown, one line).
    pub meaning: &'static str,
}

/// The headings of the configuration reference, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Data directory and listen addresses.
    General,
    /// RUST_LOG and LOG_FORMAT.
    Logging,
    /// CORS and timeouts of auth and orders.
    HttpEdge,
    /// Which database each service uses.
    Databases,
    /// The auth service.
    Auth,
    /// Google login through auth.
    Google,
    /// The orders service.
    Orders,
    /// Redis for the cache and the rate limiter.
    Redis,
    /// Where jobs wait and how they are retried.
    JobQueue,
    /// The worker.
    Worker,
    /// Which event bus, and the embedded broker.
    Bus,
    /// The Kafka bus.
    Kafka,
}

impl Section {
    /// The heading in docs/configuration.md.
    pub fn title(self) -> &'static str {
        match self {
            Self::General => "General",
            Self::Logging => "Logging",
            Self::HttpEdge => "HTTP edge (auth and orders)",
            Self::Databases => "Databases",
            Self::Auth => "Auth",
            Self::Google => "Google login",
            Self::Orders => "Orders",
            Self::Redis => "Redis (cache and rate limits)",
            Self::JobQueue => "Job queue",
            Self::Worker => "Worker",
            Self::Bus => "Event bus and embedded broker",
            Self::Kafka => "Kafka (`BUS=kafka`)",
        }
    }
}

const fn var(
    name: &'static str,
    section: Section,
    default: &'static str,
    meaning: &'static str,
) -> Variable {
    Variable {
        name,
        section,
        default,
        meaning,
    }
}

use Section::*;

/// Every environment variable orderly reads.
pub const VARIABLES: &[Variable] = &[
    // --- General -----------------------------------------------------------
    var(
        "ORDERLY_DATA_DIR",
        General,
        "`data`",
        "SQLite files, the embedded broker's log, generated keys",
    ),
    var(
        "AUTH_BIND",
        General,
        "`0.0.0.0:8001`",
        "where auth listens (port 0: any free port)",
    ),
    var(
        "ORDERS_BIND",
        General,
        "`0.0.0.0:8000`",
        "where orders listens (port 0: any free port)",
    ),
    var(
        "ORDERLY_OPS_BIND",
        General,
        "unset: `127.0.0.1:8002` for `orderly all` (skipped with a warning when taken), none for the other roles",
        "where a role serves `/health`, `/ready`, `/metrics` and, with the orders database (`all`, `orders`, `worker`), the console at `/console` ([docs/console.md](console.md)), e.g. `0.0.0.0:9090`",
    ),
    var(
        "ORDERLY_CONSOLE_TOKEN",
        General,
        "unset (no console off loopback)",
        "the token that signs in to the console on an ops address that is not loopback; without it the console is only served on loopback",
    ),
    // --- Logging -----------------------------------------------------------
    var(
        "RUST_LOG",
        Logging,
        "`info`",
        "log filter (`info,access=off` leaves out the per-request `access` lines)",
    ),
    var(
        "LOG_FORMAT",
        Logging,
        "text on a terminal, else `json`",
        "`json` (one object per line) or `text` (readable lines)",
    ),
    // --- HTTP edge ---------------------------------------------------------
    var(
        "CORS_ALLOWED_ORIGINS",
        HttpEdge,
        "`http(s)://localhost`, `127.0.0.1`, `[::1]`, any port",
        "comma-separated exact origins allowed to call auth and orders from a browser, with credentials; `*`: any origin, without credentials",
    ),
    var(
        "HTTP_HEADER_READ_TIMEOUT_SECONDS",
        HttpEdge,
        "`10`",
        "a connection whose request headers are not complete this long after it opened (or after the previous response) is closed",
    ),
    var(
        "HTTP_BODY_TIMEOUT_SECONDS",
        HttpEdge,
        "`30`",
        "a request body that sends nothing for this long is answered 408",
    ),
    var(
        "HTTP_REQUEST_TIMEOUT_SECONDS",
        HttpEdge,
        "`30`",
        "a request not answered in this time gets 503 (408 if its body was still coming)",
    ),
    var(
        "HTTP_WRITE_TIMEOUT_SECONDS",
        HttpEdge,
        "`30`",
        "a response whose client accepts none of it for this long is abandoned and the connection closed",
    ),
    // --- Databases ---------------------------------------------------------
    var(
        "AUTH_DATABASE_URL",
        Databases,
        "`sqlite://data/auth.db`",
        "auth's database, `sqlite://` or `postgres://`; wins over the `POSTGRES_AUTH_*` parts",
    ),
    var(
        "ORDERS_DATABASE_URL",
        Databases,
        "`sqlite://data/orders.db`",
        "orders' database (the worker's too), `sqlite://` or `postgres://`; wins over the `POSTGRES_ORDERS_*` parts",
    ),
    var(
        "POSTGRES_USER",
        Databases,
        "`postgres`",
        "user of both PostgreSQL databases built from parts",
    ),
    var(
        "POSTGRES_AUTH_HOST",
        Databases,
        "`localhost`",
        "auth's PostgreSQL host (any `POSTGRES_AUTH_*` part set selects PostgreSQL)",
    ),
    var(
        "POSTGRES_AUTH_PORT",
        Databases,
        "`5432`",
        "auth's PostgreSQL port",
    ),
    var(
        "POSTGRES_AUTH_DB",
        Databases,
        "`authdb`",
        "auth's PostgreSQL database",
    ),
    var(
        "POSTGRES_AUTH_PASSWORD",
        Databases,
        "none",
        "auth's PostgreSQL password (URL-encoded for you, never logged)",
    ),
    var(
        "POSTGRES_ORDERS_HOST",
        Databases,
        "`localhost`",
        "orders' PostgreSQL host (any `POSTGRES_ORDERS_*` part set selects PostgreSQL)",
    ),
    var(
        "POSTGRES_ORDERS_PORT",
        Databases,
        "`5432`",
        "orders' PostgreSQL port",
    ),
    var(
        "POSTGRES_ORDERS_DB",
        Databases,
        "`ordersdb`",
        "orders' PostgreSQL database",
    ),
    var(
        "POSTGRES_ORDERS_PASSWORD",
        Databases,
        "none",
        "orders' PostgreSQL password (URL-encoded for you, never logged)",
    ),
    // --- Auth --------------------------------------------------------------
    var(
        "AUTH_PRIVATE_KEY_PATH",
        Auth,
        "`data/keys/private.pem`",
        "RS256 signing key; the pair is generated when both files are missing",
    ),
    var(
        "AUTH_PUBLIC_KEY_PATH",
        Auth,
        "`data/keys/public.pem`",
        "RS256 public key, published in the JWKS",
    ),
    var(
        "AUTH_PREVIOUS_PUBLIC_KEY_PATHS",
        Auth,
        "unset",
        "comma-separated public keys still published in the JWKS (key rotation)",
    ),
    var(
        "AUTH_ACCESS_TOKEN_EXPIRE_MINUTES",
        Auth,
        "`30`",
        "access token lifetime",
    ),
    var(
        "ACCESS_TOKEN_EXPIRE_MINUTES",
        Auth,
        "`30`",
        "the old name of `AUTH_ACCESS_TOKEN_EXPIRE_MINUTES`, which wins",
    ),
    var(
        "AUTH_REFRESH_TOKEN_EXPIRE_DAYS",
        Auth,
        "`14`",
        "refresh token lifetime (each rotation starts a new one)",
    ),
    var(
        "AUTH_ISSUER",
        Auth,
        "unset",
        "when set: every token's `iss`, required by orders",
    ),
    var(
        "AUTH_AUDIENCE",
        Auth,
        "unset",
        "when set: every token's `aud`, required by orders",
    ),
    var(
        "AUTH_COOKIE_SECURE",
        Auth,
        "`false`",
        "`Secure` on the `oauth_state` cookie (`true` behind HTTPS)",
    ),
    var(
        "AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT",
        Auth,
        "`5`",
        "failed logins per e-mail within the window before 429",
    ),
    var(
        "AUTH_LOGIN_ACCOUNT_WINDOW_SECONDS",
        Auth,
        "`900`",
        "the per-account window of failed logins",
    ),
    var(
        "AUTH_LOGIN_MAX_FAILURES_PER_IP",
        Auth,
        "`20`",
        "failed logins per client IP within the window before 429",
    ),
    var(
        "AUTH_LOGIN_IP_WINDOW_SECONDS",
        Auth,
        "`60`",
        "the per-IP window of failed logins",
    ),
    var(
        "AUTH_REGISTER_RATE_LIMIT",
        Auth,
        "`30/hour`",
        "registrations per client IP before 429; `N/second|minute|hour`",
    ),
    var(
        "AUTH_TRUSTED_PROXIES",
        Auth,
        "none",
        "comma-separated proxy addresses or CIDR ranges (`10.0.0.0/8`, `fd00::/8`) whose `X-Forwarded-For` names the client",
    ),
    var(
        "AUTH_TOKEN_FORMAT",
        Auth,
        "`jwt`",
        "`jwt` (RS256) or `paseto` (v4.public, Ed25519); orders accepts both",
    ),
    var(
        "AUTH_PASETO_KEY_PATH",
        Auth,
        "`data/keys/paseto.key`",
        "Ed25519 secret key of PASETO tokens (generated, mode 0600, when missing)",
    ),
    // --- Google login -----------------------------------------------------
    var(
        "GOOGLE_CLIENT_ID",
        Google,
        "unset",
        "Google login's client id (with the secret; without both its routes answer 404)",
    ),
    var(
        "GOOGLE_CLIENT_SECRET",
        Google,
        "unset",
        "Google login's client secret",
    ),
    var(
        "GOOGLE_REDIRECT_URI",
        Google,
        "`http://localhost:8001/auth/callback/google`",
        "where Google sends the user back",
    ),
    var(
        "GOOGLE_AUTH_URL",
        Google,
        "`https://accounts.google.com/o/oauth2/v2/auth`",
        "Google's authorization endpoint",
    ),
    var(
        "GOOGLE_TOKEN_URL",
        Google,
        "`https://oauth2.googleapis.com/token`",
        "Google's token endpoint",
    ),
    var(
        "GOOGLE_USERINFO_URL",
        Google,
        "unset",
        "ignored (the id_token carries the identity); accepted so old deployment files still start",
    ),
    var(
        "GOOGLE_JWKS_URL",
        Google,
        "`https://www.googleapis.com/oauth2/v3/certs`",
        "keys the id_token is verified with",
    ),
    var(
        "GOOGLE_ISSUER",
        Google,
        "`https://accounts.google.com` or `accounts.google.com`",
        "the id_token's required `iss`",
    ),
    // --- Orders ------------------------------------------------------------
    var(
        "ORDERS_PUBLIC_KEY_PATH",
        Orders,
        "`AUTH_PUBLIC_KEY_PATH`",
        "key(s) orders verifies tokens with; the file may hold several PEM keys",
    ),
    var(
        "ORDERS_JWKS_URL",
        Orders,
        "unset",
        "verify with the keys at this JWKS URL instead, e.g. `http://auth:8001/.well-known/jwks.json`",
    ),
    var(
        "ORDERS_JWKS_MIN_REFETCH_SECONDS",
        Orders,
        "`10`",
        "an unknown `kid` refetches the JWKS at most this often",
    ),
    var(
        "ORDERS_REVOKED_TOKENS_URL",
        Orders,
        "auto",
        "auth's `/auth/revoked-tokens`, polled to refuse revoked access tokens; auto: the auth of the same process, else `ORDERS_JWKS_URL`'s origin; `off` disables",
    ),
    var(
        "ORDERS_CONSOLE",
        Orders,
        "`off`",
        "`on`: the operator's console also at `/console` on the orders listener, for accounts with the `admin` role, signed in through auth's `/auth/token/` (the auth of the same process, else the origin of `ORDERS_REVOKED_TOKENS_URL` or `ORDERS_JWKS_URL`) ([docs/console.md](console.md))",
    ),
    var(
        "ORDERS_REVOKED_TOKENS_POLL_SECONDS",
        Orders,
        "`5`",
        "how often that list is fetched: the longest a revoked token keeps working",
    ),
    var(
        "ORDERS_RATE_LIMIT",
        Orders,
        "`10/minute`",
        "requests per client IP; `N/second|minute|hour`",
    ),
    var(
        "ORDERS_TRUSTED_PROXIES",
        Orders,
        "none",
        "comma-separated proxy addresses or CIDR ranges (`10.0.0.0/8`, `fd00::/8`) whose `X-Forwarded-For` is believed",
    ),
    var(
        "ORDERS_CACHE_TTL_SECONDS",
        Orders,
        "`300`",
        "order cache lifetime",
    ),
    var(
        "ORDERS_STATUS_POLICY",
        Orders,
        "`strict`",
        "`strict`: owners may only cancel, PAID/SHIPPED need the `admin` role (or the worker); `owner` (legacy): owners make any legal transition",
    ),
    // --- Redis -------------------------------------------------------------
    var(
        "REDIS_URL",
        Redis,
        "unset: in-process cache",
        "Redis for the order cache (and the job queue, when `CELERY_BROKER_URL` is unset)",
    ),
    var(
        "ORDERS_REDIS_URL",
        Redis,
        "`REDIS_URL`",
        "Redis for the order cache; wins over `REDIS_URL`",
    ),
    var(
        "ORDERS_REDIS_LIMITER_URL",
        Redis,
        "the cache URL with DB 2; unset: in-process",
        "Redis for the rate-limit counters",
    ),
    var(
        "ORDERS_RATE_LIMIT_FAIL_CLOSED",
        Redis,
        "`false`",
        "with Redis down: `true` answers 503, `false` lets requests through uncounted",
    ),
    var(
        "ORDERS_RATE_LIMIT_KEY_PREFIX",
        Redis,
        "`rate_limit:`",
        "prefix of the limiter's Redis keys (`{prefix}{client ip}`)",
    ),
    // --- Job queue ---------------------------------------------------------
    var(
        "JOB_QUEUE",
        JobQueue,
        "`redis` when a queue URL is set, else `embedded`",
        "where jobs wait: `embedded` or `redis`",
    ),
    var(
        "CELERY_BROKER_URL",
        JobQueue,
        "`REDIS_URL`, else `ORDERS_REDIS_URL`",
        "the job queue's Redis (the old compose file's name)",
    ),
    var(
        "CELERY_RESULT_BACKEND",
        JobQueue,
        "DB 1 of the queue's Redis",
        "where finished jobs' results are kept (24 h)",
    ),
    var(
        "JOB_QUEUE_PREFIX",
        JobQueue,
        "`orderly`",
        "first part of the queue's Redis keys",
    ),
    var(
        "JOB_MAX_DELIVERIES",
        JobQueue,
        "`4`",
        "deliveries without an ack or failure before a job is poison (dead)",
    ),
    var(
        "JOB_RETRY_BASE_MS",
        JobQueue,
        "`1000`",
        "retry n waits a random time in [0, min(cap, base·2ⁿ⁻¹)]",
    ),
    var(
        "JOB_RETRY_CAP_MS",
        JobQueue,
        "`60000`",
        "longest wait before a retry",
    ),
    var(
        "JOB_MAX_RETRIES",
        JobQueue,
        "`3`",
        "retries of a failed job before it is dead",
    ),
    // --- Worker ------------------------------------------------------------
    var(
        "WORKER_PAYMENT_DELAY_MS",
        Worker,
        "`2000`",
        "how long the simulated payment takes",
    ),
    var(
        "WORKER_CONCURRENCY",
        Worker,
        "`8000`",
        "most jobs in flight at once (a payment is a wait; see [docs/worker.md](worker.md))",
    ),
    var(
        "WORKER_VISIBILITY_TIMEOUT_SECONDS",
        Worker,
        "`30`",
        "a reserved job not finished by then runs again (long jobs extend it)",
    ),
    // --- Bus ---------------------------------------------------------------
    var(
        "BUS",
        Bus,
        "`embedded`",
        "the event bus: `embedded`, `kafka` or `nats`",
    ),
    var(
        "NATS_URL",
        Bus,
        "`nats://127.0.0.1:4222`",
        "the NATS server (JetStream) with `BUS=nats`; `orderly broker` speaks the same protocol",
    ),
    var(
        "ORDERLY_BROKER_LISTEN",
        Bus,
        "`127.0.0.1:4223` for `orderly broker`; unset for `orderly all`",
        "where the embedded broker serves the NATS client protocol",
    ),
    var(
        "ORDERLY_BROKER_MAX_CONNECTIONS",
        Bus,
        "`1024`",
        "the broker's NATS clients at once",
    ),
    var(
        "ORDERLY_BROKER_MAX_CONNECTIONS_PER_IP",
        Bus,
        "`64`",
        "the broker's NATS clients at once from one address",
    ),
    var(
        "ORDERLY_BROKER_MAX_SUBSCRIPTIONS",
        Bus,
        "`1024`",
        "subscriptions per client connection",
    ),
    var(
        "ORDERLY_BROKER_MAX_PENDING_BYTES",
        Bus,
        "`67108864`",
        "output queued for one client before it is cut off as a slow consumer",
    ),
    // --- Kafka -------------------------------------------------------------
    var(
        "KAFKA_BOOTSTRAP_SERVERS",
        Kafka,
        "none (required with `BUS=kafka`)",
        "`host:port[,host:port…]`",
    ),
    var(
        "KAFKA_TOPIC_PARTITIONS",
        Kafka,
        "`3`",
        "partitions of the topics orderly creates",
    ),
    var(
        "KAFKA_REPLICATION_FACTOR",
        Kafka,
        "`1`",
        "replicas of the topics orderly creates",
    ),
    var(
        "KAFKA_MAX_PAYLOAD_BYTES",
        Kafka,
        "`1000000`",
        "larger events are refused before sending",
    ),
    var(
        "KAFKA_MESSAGE_TIMEOUT_MS",
        Kafka,
        "`30000`",
        "a publish not confirmed by then fails (the outbox retries it)",
    ),
    var(
        "KAFKA_FETCH_WAIT_MAX_MS",
        Kafka,
        "`100`",
        "longest a consumer fetch waits at the broker",
    ),
    var(
        "KAFKA_TOPIC_PREFIX",
        Kafka,
        "empty",
        "put before every topic and consumer group name (several deployments on one cluster)",
    ),
    var(
        "KAFKA_GROUP_INSTANCE_ID",
        Kafka,
        "unset",
        "the consumer's static group membership (`group.instance.id`), unique per consumer process",
    ),
    var(
        "WORKER_STOP_GRACE",
        Worker,
        "`15`",
        "seconds a stop waits for jobs in flight before handing the rest back to the queue",
    ),
    var(
        "NATS_TOKEN",
        Bus,
        "unset",
        "`BUS=nats`: the credentials the services present",
    ),
    var(
        "NATS_USER",
        Bus,
        "unset",
        "`BUS=nats`: a user the services present, with `NATS_PASSWORD`",
    ),
    var(
        "NATS_PASSWORD",
        Bus,
        "unset",
        "`BUS=nats`: the password of `NATS_USER`",
    ),
    var(
        "NATS_CA_FILE",
        Bus,
        "unset",
        "`BUS=nats` TLS: a CA trusted on top of the system store (`SSL_CERT_FILE`/`SSL_CERT_DIR` honoured), a client certificate and key",
    ),
    var(
        "NATS_CLIENT_CERT",
        Bus,
        "unset",
        "`BUS=nats` TLS: a client certificate (PEM), with `NATS_CLIENT_KEY`",
    ),
    var(
        "NATS_CLIENT_KEY",
        Bus,
        "unset",
        "`BUS=nats` TLS: the key of `NATS_CLIENT_CERT` (PEM)",
    ),
    var(
        "ORDERLY_BROKER_MAX_PENDING_TOTAL_BYTES",
        Bus,
        "`536870912`",
        "output queued for all of `orderly broker`'s clients together; past it, clients with over 1 MiB queued are cut off",
    ),
    var(
        "ORDERLY_BROKER_TOKEN",
        Bus,
        "unset",
        "a token every client of `orderly broker` presents (plain or bcrypt), as nats-server's `--auth` (see [docs/broker-security.md](docs/broker-security.md))",
    ),
    var(
        "ORDERLY_BROKER_AUTH_FILE",
        Bus,
        "unset",
        "JSON file of users (bcrypt/Argon2 password hashes) and their publish/subscribe permissions; `orderly broker --hash-password` makes hashes",
    ),
    var(
        "ORDERLY_BROKER_TLS_CERT",
        Bus,
        "unset",
        "PEM certificate chain and key: TLS on the broker's listener; with the CA, client certificates are required",
    ),
    var(
        "ORDERLY_BROKER_TLS_KEY",
        Bus,
        "unset",
        "the key of `ORDERLY_BROKER_TLS_CERT` (PEM)",
    ),
    var(
        "ORDERLY_BROKER_TLS_CLIENT_CA",
        Bus,
        "unset",
        "with it the broker requires client certificates signed by this CA",
    ),
    var(
        "ORDERLY_BROKER_SYNC",
        Bus,
        "`interval:50`",
        "when the embedded broker fsyncs its stream and job files: `always` (before a publish is acknowledged; concurrent publishes share one fsync) or `interval:<ms>` (see [durability](docs/durability.md#the-embedded-broker))",
    ),
    var(
        "ORDERLY_BROKER_DEDUP_WINDOW_SECONDS",
        Bus,
        "`120`",
        "how long the embedded broker remembers a job id (any dedup id) after it was published; ids of jobs still queued are kept regardless",
    ),
    var(
        "ORDERLY_SQLITE_SYNC",
        Databases,
        "`full`",
        "SQLite's `synchronous` for both databases: `full` (a commit survives a power cut) or `normal` (survives a process crash; a power cut may undo the last commits); a `synchronous=` parameter in a SQLite URL wins (see [durability](docs/durability.md))",
    ),
    var(
        "RECONCILE_SCHEDULE",
        Worker,
        "`*/30 * * * * *`",
        "when the reconciler looks for stranded orders: a cron expression with seconds (see [the reconciler](docs/reconciler.md))",
    ),
    var(
        "RECONCILE_AFTER_SECONDS",
        Worker,
        "`60`",
        "an order PENDING longer than this gets its `process_order` job again (same job id: never a second job)",
    ),
    var(
        "RECONCILE_BATCH",
        Worker,
        "`100`",
        "orders the reconciler reads per page; a run reads pages while they come back full, for up to 30 s (at most 1000)",
    ),
    var(
        "ORDERS_OUTBOX_RETENTION_SECONDS",
        Orders,
        "`3600`",
        "sent outbox rows older than this are deleted (at least `600`: repairs of orders still PENDING after minutes read their sent events); unsent rows are never deleted",
    ),
    var(
        "KAFKA_SECURITY_PROTOCOL",
        Kafka,
        "`PLAINTEXT`",
        "`SSL`, `SASL_SSL` or `SASL_PLAINTEXT` (see [docs/tls.md](docs/tls.md))",
    ),
    var(
        "KAFKA_SASL_MECHANISM",
        Kafka,
        "unset (required with `SASL_*`)",
        "`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`, and the credentials",
    ),
    var(
        "KAFKA_SASL_USERNAME",
        Kafka,
        "unset",
        "the SASL user (with `SASL_*` protocols)",
    ),
    var(
        "KAFKA_SASL_PASSWORD",
        Kafka,
        "unset",
        "the SASL password (with `SASL_*` protocols)",
    ),
    var(
        "KAFKA_SSL_CA_LOCATION",
        Kafka,
        "unset: the system's trust store, no client certificate",
        "with `SSL`/`SASL_SSL`: PEM CA trusted instead of the system's store; client certificate, key and its passphrase",
    ),
    var(
        "KAFKA_SSL_CERTIFICATE_LOCATION",
        Kafka,
        "unset",
        "client certificate (PEM) for `SSL`/`SASL_SSL`",
    ),
    var(
        "KAFKA_SSL_KEY_LOCATION",
        Kafka,
        "unset",
        "the client certificate's key (PEM)",
    ),
    var(
        "KAFKA_SSL_KEY_PASSWORD",
        Kafka,
        "unset",
        "the passphrase of that key",
    ),
    var(
        "REDIS_CA_FILE",
        Redis,
        "unset: the system's trust store, no client certificate",
        "for every `rediss://` URL: PEM CA trusted instead of the system's store; client certificate and key (both or neither) (see [docs/tls.md](docs/tls.md))",
    ),
    var(
        "REDIS_CLIENT_CERT_FILE",
        Redis,
        "unset",
        "client certificate (PEM) for every `rediss://` URL, with `REDIS_CLIENT_KEY_FILE`",
    ),
    var(
        "REDIS_CLIENT_KEY_FILE",
        Redis,
        "unset",
        "the key of `REDIS_CLIENT_CERT_FILE` (PEM)",
    ),
    var(
        "PGSSLMODE",
        Databases,
        "libpq's: `prefer`, none",
        "TLS to PostgreSQL for every database URL (whose `sslmode=`, `sslrootcert=`, `sslcert=`, `sslkey=` win); `verify-full` checks the server against the system's trust store plus the CA file (see [docs/tls.md](docs/tls.md))",
    ),
    var(
        "PGSSLROOTCERT",
        Databases,
        "unset",
        "libpq's: a CA file trusted besides the system store for PostgreSQL",
    ),
    var(
        "PGSSLCERT",
        Databases,
        "unset",
        "libpq's: a client certificate for PostgreSQL",
    ),
    var(
        "PGSSLKEY",
        Databases,
        "unset",
        "libpq's: the key of `PGSSLCERT`",
    ),
];

/// Every name in [`VARIABLES`], in its order.
pub const ENV_NAMES: &[&str] = &{
    let mut names = [""; VARIABLES.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = VARIABLES[i].name;
        i += 1;
    }
    names
};
