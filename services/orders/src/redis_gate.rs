//! What the Redis cache and limiter share: a lazily connecting, self-reconnecting
//! connection with short timeouts, and a gate that keeps a dead Redis from
//! slowing requests down or flooding the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use orderly_core::config::redact_url;
use orderly_redis::{RedisTls, open_client};

/// Upper bound on one Redis operation as a request sees it.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failure, requests skip Redis this long before trying it again.
const BACKOFF: Duration = Duration::from_secs(1);
/// At most one "Redis is failing" log line per this interval (per component).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A connection manager that connects on first use (so orderly starts while
/// Redis is down) and reconnects by itself after Redis comes back. `tls`
/// applies to `rediss://` URLs.
pub(crate) fn connect_lazy(url: &str, tls: &RedisTls) -> Result<ConnectionManager, String> {
    let client = open_client(url, tls).map_err(|e| format!("{}: {e}", redact_url(url)))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(OP_TIMEOUT))
        .set_response_timeout(Some(OP_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200));
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("{}: {e}", redact_url(url)))
}

/// Failure bookkeeping for one Redis-backed component.
pub(crate) struct Gate {
    what: &'static str,
    error_metric: &'static str,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried.
    skip_until_ms: AtomicU64,
    last_log_ms: AtomicU64,
    suppressed: AtomicU64,
    failing: AtomicBool,
}

impl Gate {
    pub(crate) fn new(what: &'static str, error_metric: &'static str) -> Self {
        Self {
            what,
            error_metric,
            started: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            last_log_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether to try Redis now (false while backing off after a failure).
    pub(crate) fn open(&self) -> bool {
        self.now_ms() >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    /// Count, log (at most once per [`LOG_EVERY`]) and back off.
    pub(crate) fn failed(&self, op: &'static str, error: &dyn std::fmt::Display) {
        metrics::counter!(self.error_metric, "op" => op).increment(1);
        let now = self.now_ms();
        self.skip_until_ms
            .store(now + BACKOFF.as_millis() as u64, Ordering::Relaxed);
        let was_failing = self.failing.swap(true, Ordering::Relaxed);
        let last = self.last_log_ms.load(Ordering::Relaxed);
        let due = !was_failing || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last_log_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                component = self.what,
                op,
                error = %error,
                similar_errors_not_logged = suppressed,
                "Redis is failing; carrying on without it"
            );
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn succeeded(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(component = self.what, "Redis answers again");
        }
    }
}

/// Run one Redis operation under [`OP_TIMEOUT`].
pub(crate) async fn bounded<T>(
    op: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", OP_TIMEOUT.as_millis())),
    }
}

/// `PING`, for `/ready`.
pub(crate) async fn ping(conn: &ConnectionManager) -> Result<(), String> {
    let mut conn = conn.clone();
    bounded(redis::cmd("PING").query_async::<String>(&mut conn))
        .await
        .map(|_| ())
}
