//! Per-client request limits: the port and an in-memory fixed-window limiter.
//!
//! Fixed windows, like the old slowapi limiter and the Redis `INCR`+`EXPIRE`
//! pattern, so "10 per minute" means at most 10 in any clock-aligned minute
//! whichever backend counts (a GCRA bucket would let ~20 through in the first minute).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use orderly_core::config::RateLimit;

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_after: u64,
}

/// The limiter cannot count and is configured to refuse rather than guess (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Rate limiter unavailable")]
pub struct LimiterUnavailable;

#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Count one request of `client`. `Err` only when the backend is down and
    /// the limiter is set to fail closed; failing open returns an allowing decision.
    async fn hit(&self, client: &str) -> Result<Decision, LimiterUnavailable>;
}

pub struct MemoryLimiter {
    rule: RateLimit,
    /// (client, window number) -> requests counted; entries expire with their window.
    windows: moka::sync::Cache<(String, u64), Arc<AtomicU32>>,
}

impl MemoryLimiter {
    pub fn new(rule: RateLimit) -> Self {
        Self {
            rule,
            windows: moka::sync::Cache::builder()
                .time_to_live(rule.window + Duration::from_secs(1))
                .max_capacity(1_000_000)
                .build(),
        }
    }

    fn decide(&self, client: &str, now: Duration) -> Decision {
        let window = self.rule.window.as_secs().max(1);
        let number = now.as_secs() / window;
        let counter = self
            .windows
            .get_with((client.to_string(), number), || Arc::new(AtomicU32::new(0)));
        let count = counter.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        let reset_after = window - now.as_secs() % window;
        Decision {
            allowed: count <= self.rule.limit,
            limit: self.rule.limit,
            remaining: self.rule.limit.saturating_sub(count),
            reset_after,
        }
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn hit(&self, client: &str) -> Result<Decision, LimiterUnavailable> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(self.decide(client, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_request_in_a_window_is_refused() {
        let l = MemoryLimiter::new(RateLimit {
            limit: 10,
            window: Duration::from_secs(60),
        });
        let t = Duration::from_secs(120);
        for i in 0..10 {
            let d = l.decide("1.2.3.4", t);
            assert!(d.allowed);
            assert_eq!(d.remaining, 9 - i);
        }
        let d = l.decide("1.2.3.4", t);
        assert!(!d.allowed);
        assert_eq!(d.reset_after, 60);
        assert!(
            l.decide("5.6.7.8", t).allowed,
            "other clients are counted apart"
        );
        assert!(
            l.decide("1.2.3.4", t + Duration::from_secs(60)).allowed,
            "a new window starts fresh"
        );
    }
}
