//! The orders service: where it listens and stores orders, how it verifies
//! tokens, its cache and rate limit, and who may change an order's status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{Env, bind_addr, invalid};
use super::proxies::{TrustedProxies, trusted_proxies};
use super::stores::{PgParts, database_url, redis_url, with_redis_db};
use super::tls::{TlsFiles, redis_tls};
use super::verifier::verifier_config;
use super::{ConfigError, RateLimit, Secret, VerifierConfig};

/// An unknown kid refetches the JWKS at most this often, so a stream of forged
/// kids cannot turn orders into a load generator against auth.
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);

/// The default of `ORDERS_OUTBOX_RETENTION_SECONDS`: an hour of sent events.
const DEFAULT_OUTBOX_RETENTION: Duration = Duration::from_secs(3600);
/// The shortest retention allowed: repairs look up the events of orders
/// still PENDING after minutes, so sent rows must outlive that.
const MIN_OUTBOX_RETENTION: Duration = Duration::from_secs(600);

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

/// The orders service.
#[derive(Debug, Clone)]
pub struct OrdersSettings {
    /// `ORDERS_BIND`, HOST:PORT.
    pub bind: String,
    /// `sqlite://…` or `postgres://…`; may hold a password, hence [`Secret`].
    pub database_url: Secret,
    /// The public key tokens are verified with (default: auth's).
    pub public_key_path: PathBuf,
    /// Order creations allowed per client.
    pub rate_limit: RateLimit,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// How long a cached order is served.
    pub cache_ttl: Duration,
    /// Who may set which status.
    pub status_policy: StatusPolicy,
    /// Redis for the order cache (`order:{id}`); `None`: in-process cache.
    pub redis_cache_url: Option<Secret>,
    /// Redis for the rate-limit counters; `None`: in-process limiter.
    pub redis_limiter_url: Option<Secret>,
    /// `REDIS_CA_FILE` and the client certificate, for `rediss://` URLs.
    pub redis_tls: TlsFiles,
    /// With Redis unreachable: refuse requests (503) instead of letting them through.
    pub rate_limit_fail_closed: bool,
    /// Prefix of the limiter's Redis keys (lets instances or test runs count apart).
    pub rate_limit_key_prefix: String,
    /// Verify tokens with the keys of this JWKS instead of `public_key_path`.
    pub jwks_url: Option<String>,
    /// An unknown kid refetches the JWKS at most once per this interval.
    pub jwks_min_refetch: Duration,
    /// `AUTH_ISSUER`/`AUTH_AUDIENCE`: required in tokens when set.
    pub verifier: VerifierConfig,
    /// `ORDERS_REVOKED_TOKENS_URL`: where auth lists revoked access tokens.
    pub revoked_tokens: RevokedTokensSource,
    /// `ORDERS_REVOKED_TOKENS_POLL_SECONDS`: how often that list is fetched,
    /// the longest a revoked token keeps working.
    pub revoked_tokens_poll: Duration,
    /// How long sent outbox rows are kept before the relay deletes them.
    pub outbox_retention: Duration,
    /// `ORDERS_CONSOLE`: the operator's console at `/console` on the API's
    /// listener too, for admin accounts.
    pub console: bool,
}

/// Where orders learns which access tokens auth revoked before their expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokedTokensSource {
    /// Unset: the auth service of the same process, or the origin of
    /// `ORDERS_JWKS_URL`; nothing when neither is known.
    Auto,
    /// `off`: revoked access tokens work until they expire.
    Off,
    /// An explicit `http(s)://…/auth/revoked-tokens`.
    Url(String),
}

/// The path auth serves its revoked-token list on.
pub const REVOKED_TOKENS_PATH: &str = "/auth/revoked-tokens";
/// The path of auth's password sign-in (OAuth2 password flow).
pub const TOKEN_PATH: &str = "/auth/token/";

/// The orders section; the public key defaults to auth's.
pub(super) fn orders_settings(
    env: &Env,
    data_dir: &Path,
    auth_public_key: &Path,
) -> Result<OrdersSettings, ConfigError> {
    let trusted_proxies = trusted_proxies(env, "ORDERS_TRUSTED_PROXIES")?;
    let status_policy = status_policy(env)?;
    // The more specific name wins: ORDERS_REDIS_URL lets orders use another
    // Redis than the job queue's REDIS_URL.
    let redis_cache = redis_url(env, &["ORDERS_REDIS_URL", "REDIS_URL"])?;
    let redis_limiter = match redis_url(env, &["ORDERS_REDIS_LIMITER_URL"])? {
        Some((_, url)) => Some(url),
        None => redis_cache.as_ref().map(|(_, url)| with_redis_db(url, 2)),
    };
    Ok(OrdersSettings {
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
            .unwrap_or_else(|| auth_public_key.to_path_buf()),
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
        redis_tls: redis_tls(env)?,
        rate_limit_fail_closed: env.flag(&["ORDERS_RATE_LIMIT_FAIL_CLOSED"])?,
        rate_limit_key_prefix: env
            .value(&["ORDERS_RATE_LIMIT_KEY_PREFIX"])
            .unwrap_or_else(|| "rate_limit:".into()),
        jwks_url: jwks_url(env)?,
        jwks_min_refetch: Duration::from_secs(env.parse(
            &["ORDERS_JWKS_MIN_REFETCH_SECONDS"],
            DEFAULT_JWKS_MIN_REFETCH.as_secs(),
        )?),
        verifier: verifier_config(env),
        revoked_tokens: revoked_tokens(env)?,
        revoked_tokens_poll: Duration::from_secs(
            env.parse::<u64>(&["ORDERS_REVOKED_TOKENS_POLL_SECONDS"], 5)?
                .max(1),
        ),
        outbox_retention: outbox_retention(env)?,
        console: env.flag(&["ORDERS_CONSOLE"])?,
    })
}

/// `ORDERS_REVOKED_TOKENS_URL`: `off`, or an http(s) URL.
fn revoked_tokens(env: &Env) -> Result<RevokedTokensSource, ConfigError> {
    match env.get(&["ORDERS_REVOKED_TOKENS_URL"]) {
        None => Ok(RevokedTokensSource::Auto),
        Some((_, v)) if v == "off" => Ok(RevokedTokensSource::Off),
        Some((name, value)) => match url::Url::parse(&value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(RevokedTokensSource::Url(value)),
            _ => Err(invalid(&name, &value, "expected off or an http(s):// URL")),
        },
    }
}

impl OrdersSettings {
    /// The revoked-token list to poll, given the URL of an auth service in
    /// the same process (if any); `None`: revocations are not checked.
    pub fn revoked_tokens_url(&self, local_auth: Option<&str>) -> Option<String> {
        match &self.revoked_tokens {
            RevokedTokensSource::Off => None,
            RevokedTokensSource::Url(url) => Some(url.clone()),
            RevokedTokensSource::Auto => local_auth
                .map(|base| format!("{}{REVOKED_TOKENS_PATH}", base.trim_end_matches('/')))
                .or_else(|| {
                    let jwks = url::Url::parse(self.jwks_url.as_deref()?).ok()?;
                    Some(jwks.join(REVOKED_TOKENS_PATH).ok()?.to_string())
                }),
        }
    }

    /// Where the console signs admins in (auth's [`TOKEN_PATH`]): the auth
    /// of the same process, else the origin of an explicit
    /// `ORDERS_REVOKED_TOKENS_URL` or of `ORDERS_JWKS_URL`; `None`: unknown.
    pub fn token_url(&self, local_auth: Option<&str>) -> Option<String> {
        if let Some(base) = local_auth {
            return Some(format!("{}{TOKEN_PATH}", base.trim_end_matches('/')));
        }
        let revoked = match &self.revoked_tokens {
            RevokedTokensSource::Url(url) => Some(url.as_str()),
            _ => None,
        };
        let known = url::Url::parse(revoked.or(self.jwks_url.as_deref())?).ok()?;
        Some(known.join(TOKEN_PATH).ok()?.to_string())
    }
}

/// `ORDERS_OUTBOX_RETENTION_SECONDS`, at least [`MIN_OUTBOX_RETENTION`].
fn outbox_retention(env: &Env) -> Result<Duration, ConfigError> {
    const NAME: &str = "ORDERS_OUTBOX_RETENTION_SECONDS";
    let seconds: u64 = env.parse(&[NAME], DEFAULT_OUTBOX_RETENTION.as_secs())?;
    if seconds < MIN_OUTBOX_RETENTION.as_secs() {
        return Err(invalid(
            NAME,
            &seconds.to_string(),
            format!(
                "must be at least {} (orders still PENDING after minutes are repaired from their sent events)",
                MIN_OUTBOX_RETENTION.as_secs()
            ),
        ));
    }
    Ok(Duration::from_secs(seconds))
}

fn status_policy(env: &Env) -> Result<StatusPolicy, ConfigError> {
    match env.get(&["ORDERS_STATUS_POLICY"]) {
        None => Ok(StatusPolicy::Strict),
        Some((_, v)) if v == "owner" => Ok(StatusPolicy::Owner),
        Some((_, v)) if v == "strict" => Ok(StatusPolicy::Strict),
        Some((name, v)) => Err(invalid(&name, &v, "expected owner or strict")),
    }
}

/// `ORDERS_JWKS_URL`: an http(s) URL when set.
fn jwks_url(env: &Env) -> Result<Option<String>, ConfigError> {
    match env.get(&["ORDERS_JWKS_URL"]) {
        None => Ok(None),
        Some((name, value)) => match url::Url::parse(&value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(value)),
            _ => Err(invalid(&name, &value, "expected an http(s):// URL")),
        },
    }
}
