//! The HTTP edge shared by auth and orders: CORS and how long a client may
//! take. Plain data here; `orderly-http` applies it.

use std::time::Duration;

use super::ConfigError;
use super::cors::CorsOrigins;
use super::env::{Env, invalid, positive};

/// What the HTTP server wraps around both services: which browser origins
/// may call them, and how long a client may take before the server gives up
/// on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `CORS_ALLOWED_ORIGINS` (default: localhost origins only).
    pub cors: CorsOrigins,
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
            cors: CorsOrigins::default(),
            header_read_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

pub(super) fn http_settings(env: &Env) -> Result<HttpSettings, ConfigError> {
    let defaults = HttpSettings::default();
    let cors = match env.get(&["CORS_ALLOWED_ORIGINS"]) {
        None => defaults.cors,
        Some((name, value)) => {
            CorsOrigins::parse(&value).map_err(|why| invalid(&name, &value, why))?
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
