//! TLS to the backing services. Redis's certificate files are read here;
//! PostgreSQL's are libpq's own `PG*` variables, which the driver reads
//! itself, so they are only checked here, to fail at start with the variable
//! named rather than at the first connection. Kafka's are in [`super::bus`].

use std::path::PathBuf;

use super::ConfigError;
use super::env::{Env, invalid};

/// A CA file to trust and a client certificate with its key, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// `REDIS_CA_FILE`, `REDIS_CLIENT_CERT_FILE`, `REDIS_CLIENT_KEY_FILE`: for
/// every `rediss://` URL (queue, results, cache, limiter).
pub(super) fn redis_tls(env: &Env) -> Result<TlsFiles, ConfigError> {
    let files = TlsFiles {
        ca_file: existing_file(env, "REDIS_CA_FILE")?,
        cert_file: existing_file(env, "REDIS_CLIENT_CERT_FILE")?,
        key_file: existing_file(env, "REDIS_CLIENT_KEY_FILE")?,
    };
    pair(
        env,
        ("REDIS_CLIENT_CERT_FILE", &files.cert_file),
        ("REDIS_CLIENT_KEY_FILE", &files.key_file),
    )?;
    Ok(files)
}

/// The certificate files only mean something with `rediss://`: set with no
/// Redis URL using it, they are a mistake (TLS intended, plain text used).
pub(super) fn check_redis_tls_used(
    env: &Env,
    files: &TlsFiles,
    urls: &[Option<&str>],
) -> Result<(), ConfigError> {
    if !files.is_set() || urls.iter().flatten().any(|u| u.starts_with("rediss://")) {
        return Ok(());
    }
    let (name, value) = [
        "REDIS_CA_FILE",
        "REDIS_CLIENT_CERT_FILE",
        "REDIS_CLIENT_KEY_FILE",
    ]
    .iter()
    .find_map(|n| env.get(&[*n]))
    .unwrap_or_default();
    Err(invalid(
        &name,
        &value,
        "no Redis URL is rediss://, so no TLS connection would use it; use rediss:// URLs",
    ))
}

/// libpq's `sslmode` values, which sqlx takes too.
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`: the defaults of
/// every PostgreSQL URL (its `sslmode`, `sslrootcert`, `sslcert`, `sslkey`
/// parameters win).
pub(super) fn check_postgres_tls(env: &Env) -> Result<(), ConfigError> {
    if let Some((name, mode)) = env.get(&["PGSSLMODE"])
        && !SSL_MODES.contains(&mode.as_str())
    {
        return Err(invalid(
            &name,
            &mode,
            format!("expected one of {}", SSL_MODES.join(", ")),
        ));
    }
    existing_file(env, "PGSSLROOTCERT")?;
    let cert = existing_file(env, "PGSSLCERT")?;
    let key = existing_file(env, "PGSSLKEY")?;
    pair(env, ("PGSSLCERT", &cert), ("PGSSLKEY", &key))
}

/// A variable naming a file that must exist (so a typo fails at start).
pub(super) fn existing_file(env: &Env, name: &str) -> Result<Option<PathBuf>, ConfigError> {
    let Some((name, value)) = env.get(&[name]) else {
        return Ok(None);
    };
    let path = PathBuf::from(&value);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(Some(path)),
        Ok(_) => Err(invalid(&name, &value, "not a file")),
        Err(e) => Err(invalid(&name, &value, format!("cannot read it: {e}"))),
    }
}

/// A client certificate and its key: both or neither.
pub(super) fn pair(
    env: &Env,
    (cert_name, cert): (&str, &Option<PathBuf>),
    (key_name, key): (&str, &Option<PathBuf>),
) -> Result<(), ConfigError> {
    match (cert, key) {
        (Some(_), None) => Err(invalid(
            cert_name,
            &env.value(&[cert_name]).unwrap_or_default(),
            format!("a client certificate needs its key: set {key_name} too"),
        )),
        (None, Some(_)) => Err(invalid(
            key_name,
            &env.value(&[key_name]).unwrap_or_default(),
            format!("a client key needs its certificate: set {cert_name} too"),
        )),
        _ => Ok(()),
    }
}
