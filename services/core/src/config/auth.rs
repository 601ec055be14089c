//! The auth service: where it listens and stores users, its signing keys,
//! token lifetimes and format, Google login, and the failed-login limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::{Env, bind_addr, invalid, positive};
use super::proxies::{TrustedProxies, trusted_proxies};
use super::stores::{PgParts, database_url};
use super::verifier::verifier_config;
use super::{ConfigError, RateLimit, Secret, VerifierConfig};

/// Google login (OpenID Connect).
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    /// `GOOGLE_CLIENT_ID`.
    pub client_id: String,
    /// `GOOGLE_CLIENT_SECRET`.
    pub client_secret: Secret,
    /// Where Google sends the browser back to.
    pub redirect_uri: String,
    /// Google's authorization endpoint.
    pub auth_url: String,
    /// Google's token endpoint.
    pub token_url: String,
    /// Where the keys that sign Google's id_tokens are published.
    pub jwks_url: String,
    /// Accepted `iss` values of the id_token.
    pub issuers: Vec<String>,
}

/// The auth service.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `AUTH_BIND`, HOST:PORT.
    pub bind: String,
    /// `sqlite://…` or `postgres://…`; may hold a password, hence [`Secret`].
    pub database_url: Secret,
    /// The RS256 signing key (generated on first start when missing).
    pub private_key_path: PathBuf,
    /// Its public key.
    pub public_key_path: PathBuf,
    /// Lifetime of an access token.
    pub access_token_ttl: Duration,
    /// Whether the refresh cookie is `Secure`.
    pub cookie_secure: bool,
    /// `None` when Google login is not configured (its routes answer 503).
    pub google: Option<GoogleSettings>,
    /// Public keys of earlier signing keys, still published in the JWKS while
    /// their tokens may be alive (key rotation).
    pub previous_public_key_paths: Vec<PathBuf>,
    /// `iss`/`aud` put into tokens (and required by verifiers) when set.
    pub verifier: VerifierConfig,
    /// Lifetime of a refresh token.
    pub refresh_token_ttl: Duration,
    /// Failed logins allowed before 429.
    pub login_limits: LoginLimits,
    /// Registrations accepted per client IP (`AUTH_REGISTER_RATE_LIMIT`, default
    /// 30/hour): each one costs an Argon2 hash and creates an account.
    pub register_limit: RateLimit,
    /// Peers whose `X-Forwarded-For` is believed when counting login failures per IP.
    pub trusted_proxies: TrustedProxies,
    /// What access tokens are issued as (`AUTH_TOKEN_FORMAT`).
    pub token_format: TokenFormat,
}

/// `jwt` (RS256, the default) or `paseto` (v4.public, Ed25519).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TokenFormat {
    /// RS256 JWTs.
    #[default]
    Jwt,
    /// The Ed25519 secret key lives at `key_path` (`AUTH_PASETO_KEY_PATH`),
    /// generated on first start.
    Paseto {
        /// Where the secret key is kept.
        key_path: PathBuf,
    },
}

/// Failed logins allowed per account and per client IP before 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Per account (email).
    pub per_account: RateLimit,
    /// Per client address.
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

/// The auth section; keys default to `<data dir>/keys/`.
pub(super) fn auth_settings(env: &Env, data_dir: &Path) -> Result<AuthSettings, ConfigError> {
    let keys = data_dir.join("keys");
    let private_key_path = env
        .value(&["AUTH_PRIVATE_KEY_PATH"])
        .map(PathBuf::from)
        .unwrap_or_else(|| keys.join("private.pem"));
    let public_key_path = env
        .value(&["AUTH_PUBLIC_KEY_PATH"])
        .map(PathBuf::from)
        .unwrap_or_else(|| keys.join("public.pem"));
    let access_token_ttl = access_token_ttl(env)?;
    Ok(AuthSettings {
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
        public_key_path,
        access_token_ttl,
        cookie_secure: env.flag(&["AUTH_COOKIE_SECURE"])?,
        google: google_settings(env),
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
        token_format: token_format(env, &keys)?,
        refresh_token_ttl: Duration::from_secs(
            positive(env, "AUTH_REFRESH_TOKEN_EXPIRE_DAYS", 14)? * 86_400,
        ),
        login_limits: login_limits(env)?,
        register_limit: env.parse(
            &["AUTH_REGISTER_RATE_LIMIT"],
            RateLimit {
                limit: 30,
                window: Duration::from_secs(3600),
            },
        )?,
        trusted_proxies: trusted_proxies(env, "AUTH_TRUSTED_PROXIES")?,
    })
}

/// `AUTH_ACCESS_TOKEN_EXPIRE_MINUTES` (or the old `ACCESS_TOKEN_EXPIRE_MINUTES`).
fn access_token_ttl(env: &Env) -> Result<Duration, ConfigError> {
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
    Ok(Duration::from_secs(ttl_minutes * 60))
}

/// Google login, when both the client id and secret are set.
fn google_settings(env: &Env) -> Option<GoogleSettings> {
    let client_id = env.value(&["GOOGLE_CLIENT_ID"])?;
    let secret = env.value(&["GOOGLE_CLIENT_SECRET"])?;
    Some(GoogleSettings {
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
    })
}

fn token_format(env: &Env, keys: &Path) -> Result<TokenFormat, ConfigError> {
    match env.value(&["AUTH_TOKEN_FORMAT"]).as_deref() {
        None | Some("jwt") => Ok(TokenFormat::Jwt),
        Some("paseto") => Ok(TokenFormat::Paseto {
            key_path: env
                .value(&["AUTH_PASETO_KEY_PATH"])
                .map(PathBuf::from)
                .unwrap_or_else(|| keys.join("paseto.key")),
        }),
        Some(other) => Err(invalid("AUTH_TOKEN_FORMAT", other, "must be jwt or paseto")),
    }
}

fn login_limits(env: &Env) -> Result<LoginLimits, ConfigError> {
    let count = |name: &str, default: u64| -> Result<u32, ConfigError> {
        Ok(u32::try_from(positive(env, name, default)?).unwrap_or(u32::MAX))
    };
    let seconds = |name: &str, default: u64| -> Result<Duration, ConfigError> {
        positive(env, name, default).map(Duration::from_secs)
    };
    Ok(LoginLimits {
        per_account: RateLimit {
            limit: count("AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)?,
            window: seconds("AUTH_LOGIN_ACCOUNT_WINDOW_SECONDS", 900)?,
        },
        per_ip: RateLimit {
            limit: count("AUTH_LOGIN_MAX_FAILURES_PER_IP", 20)?,
            window: seconds("AUTH_LOGIN_IP_WINDOW_SECONDS", 60)?,
        },
    })
}
