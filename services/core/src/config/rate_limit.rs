//! `N/second|minute|hour` limits: the orders API's rate limit and the
//! failed-login limits of auth.

use std::time::Duration;

/// `N/second|minute|hour`, e.g. `10/minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// How many in one window.
    pub limit: u32,
    /// The window's length.
    pub window: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = s
            .split_once('/')
            .ok_or("expected N/second, N/minute or N/hour")?;
        let limit: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a whole number"))?;
        if limit == 0 {
            return Err("the limit must be at least 1".into());
        }
        let window = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("unknown unit {other:?}")),
        };
        Ok(Self { limit, window })
    }
}
