//! Where the data lives: database URLs (a whole URL, PostgreSQL parts, or
//! SQLite in the data directory) and Redis URLs.

use std::path::PathBuf;

use super::env::{Env, invalid, redact_url};
use super::{ConfigError, Secret};

/// The variables of one service's PostgreSQL parts.
pub(super) struct PgParts<'a> {
    pub(super) url: &'a str,
    pub(super) host: &'a str,
    pub(super) port: &'a str,
    pub(super) db: &'a str,
    pub(super) password: &'a str,
    pub(super) default_db: &'a str,
}

/// A database URL: the whole-URL variable wins; then the PostgreSQL parts (any of
/// host/port/db/password set selects PostgreSQL); else SQLite in the data dir.
pub(super) fn database_url(
    env: &Env,
    vars: PgParts<'_>,
    sqlite_file: PathBuf,
) -> Result<Secret, ConfigError> {
    if let Some((name, url)) = env.get(&[vars.url]) {
        let parsed =
            url::Url::parse(&url).map_err(|e| invalid(&name, &redact_url(&url), e.to_string()))?;
        return match parsed.scheme() {
            "sqlite" => Ok(Secret::new(with_sqlite_sync(env, &url)?)),
            "postgres" | "postgresql" => Ok(Secret::new(url)),
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
        let url = format!("sqlite://{}?mode=rwc", sqlite_file.display());
        return Ok(Secret::new(with_sqlite_sync(env, &url)?));
    }
    postgres_url(env, &vars)
}

/// `ORDERLY_SQLITE_SYNC=full|normal` as the URL's `synchronous=` parameter,
/// which `orderly_db` reads; a URL that names its own keeps it. Unset: the
/// URL as it is (FULL unless it says otherwise).
fn with_sqlite_sync(env: &Env, url: &str) -> Result<String, ConfigError> {
    let Some((name, value)) = env.get(&["ORDERLY_SQLITE_SYNC"]) else {
        return Ok(url.to_string());
    };
    let value = value.to_ascii_lowercase();
    if !matches!(value.as_str(), "full" | "normal") {
        return Err(invalid(&name, &value, "expected full or normal"));
    }
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if query.split('&').any(|p| p.starts_with("synchronous=")) {
        return Ok(url.to_string());
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{separator}synchronous={value}"))
}

/// The URL the PostgreSQL parts make; the password is percent-encoded.
fn postgres_url(env: &Env, vars: &PgParts<'_>) -> Result<Secret, ConfigError> {
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

/// A Redis URL setting: `redis://`, `rediss://` (TLS) or `unix://`.
pub(super) fn redis_url(
    env: &Env,
    names: &[&str],
) -> Result<Option<(String, url::Url)>, ConfigError> {
    let Some((name, value)) = env.get(names) else {
        return Ok(None);
    };
    let parsed =
        url::Url::parse(&value).map_err(|e| invalid(&name, &redact_url(&value), e.to_string()))?;
    match parsed.scheme() {
        "redis" | "rediss" | "unix" | "redis+unix" => Ok(Some((name, parsed))),
        other => Err(invalid(
            &name,
            &redact_url(&value),
            format!("unknown scheme {other:?} (expected redis://, rediss:// or unix://)"),
        )),
    }
}

/// The same server as `url`, database `db` (the old layout: cache 0, results 1, limiter 2).
pub(super) fn with_redis_db(url: &url::Url, db: u8) -> url::Url {
    let mut url = url.clone();
    if matches!(url.scheme(), "redis" | "rediss") {
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
