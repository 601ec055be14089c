//! How a queue connects and behaves.

use std::time::Duration;

use orderly_bus::RetryPolicy;

/// How a [`RedisQueue`] connects and behaves.
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// The queue's Redis (`redis://host:6379/0`).
    pub url: String,
    /// Where finished jobs' results go (`redis://host:6379/1`); `None`: nowhere.
    pub results_url: Option<String>,
    /// First part of every key (lets instances or test runs share a server).
    pub prefix: String,
    /// Waits between a failed attempt and the retry, and how many retries.
    pub policy: RetryPolicy,
    /// Deliveries of one run without an ack or a failure before it is poison.
    pub max_deliveries: u32,
    /// How long a job id is remembered for deduplication.
    pub dedup_ttl: Duration,
    /// How long a result is kept.
    pub result_ttl: Duration,
}

impl RedisQueueConfig {
    /// Settings for the queue at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            results_url: None,
            prefix: "orderly".into(),
            policy: RetryPolicy::default(),
            max_deliveries: DEFAULT_MAX_DELIVERIES,
            dedup_ttl: Duration::from_secs(7 * 24 * 3600),
            result_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// One delivery plus 3 recoveries after a lost worker (Sidekiq Pro's default).
pub const DEFAULT_MAX_DELIVERIES: u32 = 4;
