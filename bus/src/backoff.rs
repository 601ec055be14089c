//! Waiting between attempts to reach something that is down: a broker, a
//! database, a listener out of file descriptors. Every reconnect loop uses this
//! one type, so they all grow the same way and jitter the same way.

use std::time::Duration;

use rand::Rng;

/// Capped exponential backoff with jitter.
///
/// Each [`Backoff::next_delay`] returns the current wait, spread by up to a
/// quarter either way so that many processes retrying together drift apart,
/// then doubles the wait up to the cap. [`Backoff::reset`] starts over after a
/// success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    current: Duration,
    jitter: bool,
}

impl Backoff {
    /// Starts at `initial` and doubles up to `cap`, with jitter.
    pub fn new(initial: Duration, cap: Duration) -> Self {
        let cap = cap.max(initial);
        Self {
            initial,
            cap,
            current: initial,
            jitter: true,
        }
    }

    /// The same growth without jitter, for loops where exact waits matter more
    /// than spreading (a local accept loop has no herd to spread).
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The wait before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.cap);
        if !self.jitter || base.is_zero() {
            return base;
        }
        let spread = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(spread).min(self.cap)
    }

    /// The wait the next call would grow from (before jitter).
    pub fn current(&self) -> Duration {
        self.current
    }

    /// Back to the initial wait, after an attempt succeeded.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(500)).without_jitter();
        let waits: Vec<_> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_a_quarter_and_under_the_cap() {
        for _ in 0..200 {
            let mut b = Backoff::new(Duration::from_millis(400), Duration::from_secs(1));
            let first = b.next_delay();
            assert!(first >= Duration::from_millis(300) && first <= Duration::from_millis(500));
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
            assert!(b.next_delay() <= Duration::from_secs(1));
        }
    }
}
