//! Reading variables: the snapshot of the environment, typed lookups that
//! name the variable in their error, and values that must not be logged.

use std::collections::HashMap;
use std::time::Duration;

use super::ENV_NAMES;

/// A value that never shows in logs or `Debug` output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a value that must stay out of logs.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The value itself, for the one place that uses it.
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

/// Why the configuration cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A variable is set to something that cannot be used.
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        /// The variable's name.
        name: String,
        /// Its value (passwords redacted).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A combination this build cannot run.
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

    /// Exactly these variables (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// Every variable's name, set or empty.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
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

    pub(super) fn value(&self, names: &[&str]) -> Option<String> {
        self.get(names).map(|(_, v)| v)
    }

    pub(super) fn parse<T: std::str::FromStr>(
        &self,
        names: &[&str],
        default: T,
    ) -> Result<T, ConfigError>
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

    pub(super) fn flag(&self, names: &[&str]) -> Result<bool, ConfigError> {
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

pub(super) fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

pub(super) fn bind_addr(env: &Env, var: &str, default: &str) -> Result<String, ConfigError> {
    match env.get(&[var]) {
        None => Ok(default.to_string()),
        Some((name, value)) => value
            .parse::<std::net::SocketAddr>()
            .map(|_| value.clone())
            .map_err(|_| invalid(&name, &value, "expected HOST:PORT, e.g. 0.0.0.0:8000")),
    }
}

/// A whole number of at least 1.
pub(super) fn positive(env: &Env, name: &str, default: u64) -> Result<u64, ConfigError> {
    let value: u64 = env.parse(&[name], default)?;
    if value == 0 {
        return Err(invalid(name, "0", "must be at least 1"));
    }
    Ok(value)
}

pub(super) fn millis(env: &Env, names: &[&str], default: u64) -> Result<Duration, ConfigError> {
    env.parse(names, default).map(Duration::from_millis)
}
