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
    "KAFKA_BOOTSTRAP_SERVERS",
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
    "GOOGLE_CLIENT_ID",
    "GOOGLE_CLIENT_SECRET",
    "GOOGLE_REDIRECT_URI",
    "GOOGLE_AUTH_URL",
    "GOOGLE_TOKEN_URL",
    "GOOGLE_USERINFO_URL",
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
    "REDIS_URL",
    "ORDERS_REDIS_URL",
    "ORDERS_REDIS_LIMITER_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "WORKER_PAYMENT_DELAY_MS",
    "WORKER_CONCURRENCY",
    "WORKER_VISIBILITY_TIMEOUT_SECONDS",
    "JOB_RETRY_BASE_MS",
    "JOB_RETRY_CAP_MS",
    "JOB_MAX_RETRIES",
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
}

#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub client_id: String,
    pub client_secret: Secret,
    pub redirect_uri: String,
    pub auth_url: String,
    pub token_url: String,
    pub userinfo_url: String,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub bind: String,
    pub database_url: String,
    pub private_key_path: PathBuf,
    pub public_key_path: PathBuf,
    pub access_token_ttl: Duration,
    pub cookie_secure: bool,
    /// `None` when Google login is not configured (its routes answer 503).
    pub google: Option<GoogleSettings>,
}

/// Who may set which status (DESIGN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPolicy {
    /// The owner may make any legal transition (the old system's behaviour).
    Owner,
    /// Owners may only cancel; PAID/SHIPPED need the `admin` role.
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
    pub database_url: String,
    pub public_key_path: PathBuf,
    pub rate_limit: RateLimit,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub cache_ttl: Duration,
    pub status_policy: StatusPolicy,
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
    pub auth: AuthSettings,
    pub orders: OrdersSettings,
    pub worker: WorkerSettings,
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// A database URL: the whole-URL variable wins; PostgreSQL parts next; else SQLite in the data dir.
fn database_url(
    env: &Env,
    url_var: &str,
    host_var: &str,
    port_var: &str,
    db_var: &str,
    password_var: &str,
    sqlite_file: PathBuf,
) -> Result<String, ConfigError> {
    if let Some((name, url)) = env.get(&[url_var]) {
        let parsed = url::Url::parse(&url).map_err(|e| invalid(&name, &url, e.to_string()))?;
        return match parsed.scheme() {
            "sqlite" => Ok(url),
            "postgres" | "postgresql" => Err(ConfigError::Unsupported(format!(
                "{name}: PostgreSQL is not supported by this build yet; use a sqlite:// URL or leave it unset"
            ))),
            other => Err(invalid(
                &name,
                &url,
                format!("unknown scheme {other:?} (expected sqlite://)"),
            )),
        };
    }
    if env.get(&[host_var]).is_some() {
        let _ = (port_var, db_var, password_var);
        return Err(ConfigError::Unsupported(format!(
            "{host_var} is set, but PostgreSQL is not supported by this build yet; unset it to use SQLite"
        )));
    }
    Ok(format!("sqlite://{}?mode=rwc", sqlite_file.display()))
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

fn millis(env: &Env, names: &[&str], default: u64) -> Result<Duration, ConfigError> {
    env.parse(names, default).map(Duration::from_millis)
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let data_dir = PathBuf::from(env.value(&["ORDERLY_DATA_DIR"]).unwrap_or("data".into()));

        let bus = match env.get(&["BUS"]) {
            None => BusKind::Embedded,
            Some((_, v)) if v == "embedded" => BusKind::Embedded,
            Some((name, v)) if v == "kafka" || v == "nats" => {
                return Err(ConfigError::Unsupported(format!(
                    "{name}={v}: this build has only the embedded bus so far; unset BUS or use BUS=embedded"
                )));
            }
            Some((name, v)) => return Err(invalid(&name, &v, "expected embedded, kafka or nats")),
        };
        for redis_var in [
            "REDIS_URL",
            "ORDERS_REDIS_URL",
            "ORDERS_REDIS_LIMITER_URL",
            "CELERY_BROKER_URL",
            "CELERY_RESULT_BACKEND",
        ] {
            if let Some((name, _)) = env.get(&[redis_var]) {
                return Err(ConfigError::Unsupported(format!(
                    "{name} is set, but Redis is not supported by this build yet; unset it to use the embedded cache, limiter and queue"
                )));
            }
        }

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
                userinfo_url: env
                    .value(&["GOOGLE_USERINFO_URL"])
                    .unwrap_or("https://openidconnect.googleapis.com/v1/userinfo".into()),
            }),
            _ => None,
        };
        let auth = AuthSettings {
            bind: bind_addr(env, "AUTH_BIND", "0.0.0.0:8001")?,
            database_url: database_url(
                env,
                "AUTH_DATABASE_URL",
                "POSTGRES_AUTH_HOST",
                "POSTGRES_AUTH_PORT",
                "POSTGRES_AUTH_DB",
                "POSTGRES_AUTH_PASSWORD",
                data_dir.join("auth.db"),
            )?,
            private_key_path,
            public_key_path: public_key_path.clone(),
            access_token_ttl: Duration::from_secs(ttl_minutes * 60),
            cookie_secure: env.flag(&["AUTH_COOKIE_SECURE"])?,
            google,
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
            None => StatusPolicy::Owner,
            Some((_, v)) if v == "owner" => StatusPolicy::Owner,
            Some((_, v)) if v == "strict" => StatusPolicy::Strict,
            Some((name, v)) => return Err(invalid(&name, &v, "expected owner or strict")),
        };
        let orders = OrdersSettings {
            bind: bind_addr(env, "ORDERS_BIND", "0.0.0.0:8000")?,
            database_url: database_url(
                env,
                "ORDERS_DATABASE_URL",
                "POSTGRES_ORDERS_HOST",
                "POSTGRES_ORDERS_PORT",
                "POSTGRES_ORDERS_DB",
                "POSTGRES_ORDERS_PASSWORD",
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
            auth,
            orders,
            worker,
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
        assert_eq!(s.auth.database_url, "sqlite://data/auth.db?mode=rwc");
        assert_eq!(s.orders.rate_limit.limit, 10);
        assert_eq!(s.auth.access_token_ttl, Duration::from_secs(1800));
        assert!(s.auth.google.is_none());
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
