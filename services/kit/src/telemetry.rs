//! Logging: JSON lines by default (`LOG_FORMAT=text` for humans), filter from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// The variables logging reads (the rest of the configuration's are in
/// [`crate::config::ENV_NAMES`]); deployment files are checked against both.
pub const ENV_NAMES: &[&str] = &[EnvFilter::DEFAULT_ENV, LOG_FORMAT];
const LOG_FORMAT: &str = "LOG_FORMAT";

pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let text = std::env::var(LOG_FORMAT).is_ok_and(|v| v.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests in one process) is harmless.
    let _ = if text {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}
