//! Brute-force defence for the password login: failed attempts are counted per
//! account and per client IP in fixed windows; over either limit the login is
//! refused with 429 before the password is even checked. The port is a trait so
//! a shared (Redis) counter can serve several auth instances later.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::HeaderMap;
use moka::sync::Cache;
use orderly_core::config::{LoginLimits, RateLimit};

/// Keys kept at most per counter: an attacker spraying addresses or e-mails
/// evicts old windows instead of growing memory without bound.
const MAX_TRACKED: u64 = 100_000;

#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// `Err(retry_after)` when the account or the IP has used up its failures.
    async fn check(&self, ip: Option<IpAddr>, account: &str) -> Result<(), Duration>;
    async fn record_failure(&self, ip: Option<IpAddr>, account: &str);
    /// A successful login forgets the account's failures (not the IP's).
    async fn record_success(&self, account: &str);
}

struct Window {
    started: Instant,
    failures: AtomicU32,
}

/// Per-key fixed windows in process memory; each entry expires with its window.
struct Counter {
    limit: RateLimit,
    windows: Cache<String, Arc<Window>>,
}

impl Counter {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            windows: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(limit.window)
                .build(),
        }
    }

    fn blocked_for(&self, key: &str) -> Option<Duration> {
        let window = self.windows.get(key)?;
        let elapsed = window.started.elapsed();
        if elapsed >= self.limit.window
            || window.failures.load(Ordering::Relaxed) < self.limit.limit
        {
            return None;
        }
        Some(self.limit.window - elapsed)
    }

    fn fail(&self, key: &str) {
        let window = self.windows.get_with(key.to_string(), || {
            Arc::new(Window {
                started: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        window.failures.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct MemoryLoginThrottle {
    accounts: Counter,
    ips: Counter,
}

impl MemoryLoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            accounts: Counter::new(limits.per_account),
            ips: Counter::new(limits.per_ip),
        }
    }
}

#[async_trait]
impl LoginThrottle for MemoryLoginThrottle {
    async fn check(&self, ip: Option<IpAddr>, account: &str) -> Result<(), Duration> {
        let by_account = self.accounts.blocked_for(account);
        let by_ip = ip.and_then(|ip| self.ips.blocked_for(&ip.to_string()));
        match by_account.max(by_ip) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    async fn record_failure(&self, ip: Option<IpAddr>, account: &str) {
        self.accounts.fail(account);
        if let Some(ip) = ip {
            self.ips.fail(&ip.to_string());
        }
    }

    async fn record_success(&self, account: &str) {
        self.accounts.windows.invalidate(account);
    }
}

/// The client's address (see [`orderly_http::client_ip::client_ip`]); `None` when
/// the server did not record the peer (a router driven without a socket, as in tests).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    peer.map(|peer| orderly_http::client_ip::client_ip(peer, headers, trusted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(account: u32, ip: u32) -> LoginLimits {
        LoginLimits {
            per_account: RateLimit {
                limit: account,
                window: Duration::from_secs(900),
            },
            per_ip: RateLimit {
                limit: ip,
                window: Duration::from_secs(60),
            },
        }
    }

    #[tokio::test]
    async fn an_account_is_blocked_after_its_failures_whatever_the_ip() {
        let throttle = MemoryLoginThrottle::new(limits(3, 100));
        for i in 0..3u8 {
            let ip = Some(IpAddr::from([10, 0, 0, i]));
            assert!(throttle.check(ip, "a@x.io").await.is_ok());
            throttle.record_failure(ip, "a@x.io").await;
        }
        let wait = throttle
            .check(Some(IpAddr::from([10, 0, 0, 9])), "a@x.io")
            .await
            .unwrap_err();
        assert!(wait <= Duration::from_secs(900) && wait > Duration::from_secs(800));
        assert!(throttle.check(None, "b@x.io").await.is_ok());
    }

    #[tokio::test]
    async fn an_ip_is_blocked_across_accounts_and_success_resets_only_the_account() {
        let throttle = MemoryLoginThrottle::new(limits(2, 3));
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        for account in ["a", "b", "c"] {
            throttle.record_failure(ip, account).await;
        }
        assert!(throttle.check(ip, "d").await.is_err());
        assert!(
            throttle
                .check(Some(IpAddr::from([192, 0, 2, 2])), "d")
                .await
                .is_ok()
        );

        throttle.record_failure(None, "e").await;
        throttle.record_failure(None, "e").await;
        assert!(throttle.check(None, "e").await.is_err());
        throttle.record_success("e").await;
        assert!(throttle.check(None, "e").await.is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let trusted = ["10.0.0.1".parse().unwrap()];
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &headers, &[]),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(client_ip(None, &headers, &trusted), None);
    }
}
