use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter (AWS architecture blog; Sidekiq and BullMQ
/// use the same shape): the n-th retry waits a uniform random time in
/// `[0, min(cap, base * factor^(n-1))]`, so synchronized failures spread out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Ceiling of the first retry's wait.
    pub base: Duration,
    /// Each retry's ceiling is this many times the one before.
    pub factor: f64,
    /// No wait is longer than this.
    pub cap: Duration,
    /// Retries after the first attempt (the old system: 3).
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(60),
            max_retries: 3,
        }
    }
}

impl RetryPolicy {
    /// The upper bound of the wait before retry number `retry` (1-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let exp = self.factor.powi(retry.saturating_sub(1).min(64) as i32);
        let secs = (self.base.as_secs_f64() * exp).min(self.cap.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// A jittered wait before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        if ceiling.is_zero() {
            return ceiling;
        }
        let jittered = rand::rng().random_range(0.0..=ceiling.as_secs_f64());
        Duration::from_secs_f64(jittered)
    }

    /// Given that attempt number `attempt` (1-based) just failed, what happens next.
    pub fn after_failure(&self, attempt: u32) -> Option<Duration> {
        (attempt <= self.max_retries).then(|| self.delay(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_exponentially_up_to_the_cap() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_millis(500),
            max_retries: 3,
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(4), Duration::from_millis(500));
    }

    #[test]
    fn delays_stay_within_the_ceiling() {
        let p = RetryPolicy::default();
        for retry in 1..=5 {
            for _ in 0..100 {
                assert!(p.delay(retry) <= p.ceiling(retry));
            }
        }
    }

    #[test]
    fn three_retries_then_dead() {
        let p = RetryPolicy::default();
        assert!(p.after_failure(1).is_some());
        assert!(p.after_failure(3).is_some());
        assert!(p.after_failure(4).is_none());
    }
}
