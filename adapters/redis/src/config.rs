//! How a queue connects and behaves.

use std::path::PathBuf;
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
    /// CA and client certificate for `rediss://` URLs (both of them).
    pub tls: RedisTls,
}

/// TLS files for `rediss://` servers; all unset: the system's trust store, no
/// client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM CA certificates trusted instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented when the server asks for one.
    pub client_cert_file: Option<PathBuf>,
    /// The client certificate's PEM private key.
    pub client_key_file: Option<PathBuf>,
}

impl RedisTls {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        self.ca_file.is_some() || self.client_cert_file.is_some() || self.client_key_file.is_some()
    }
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
            tls: RedisTls::default(),
        }
    }
}

/// One delivery plus 3 recoveries after a lost worker (Sidekiq Pro's default).
pub const DEFAULT_MAX_DELIVERIES: u32 = 4;
