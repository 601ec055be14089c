//! Brute-force defence for the password login: attempts are counted per account
//! and per client IP in fixed windows. A login first reserves a slot in both
//! counters — the check and the count are one step under a lock, taken before the
//! password is hashed — so a burst of parallel guesses cannot all pass the check
//! before any of them is counted. A success gives its slots back; a failure keeps
//! them. The port is a trait so a shared (Redis) counter can serve several auth
//! instances later.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::HeaderMap;
use moka::sync::Cache;
use orderly_core::config::{LoginLimits, RateLimit, TrustedProxies};

/// Keys kept at most per counter: an attacker spraying addresses or e-mails
/// evicts old windows instead of growing memory without bound.
const MAX_TRACKED: u64 = 100_000;

#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Take one attempt for the account and one for the IP, or neither:
    /// `Err(retry_after)` when either has used up its attempts in this window.
    async fn reserve(&self, ip: Option<IpAddr>, account: &str) -> Result<(), Duration>;
    /// The reserved attempt signed in: the account's attempts are forgotten and
    /// the IP's slot is given back (only failures count against an address).
    async fn succeeded(&self, ip: Option<IpAddr>, account: &str);
}

struct Window {
    started: Instant,
    taken: u32,
}

/// Fixed windows per key in process memory; each entry expires with its window.
pub struct AttemptCounter {
    limit: RateLimit,
    windows: Cache<String, Arc<Mutex<Window>>>,
}

impl AttemptCounter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            windows: Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(limit.window)
                .build(),
        }
    }

    /// Count one attempt for `key` unless its window is full; `Err(retry_after)`
    /// then. Check and count happen under the window's lock, so of N concurrent
    /// callers exactly `limit` get through.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let entry = self.windows.get_with(key.to_string(), || {
            Arc::new(Mutex::new(Window {
                started: Instant::now(),
                taken: 0,
            }))
        });
        let mut window = entry.lock().unwrap_or_else(PoisonError::into_inner);
        if window.started.elapsed() >= self.limit.window {
            *window = Window {
                started: Instant::now(),
                taken: 0,
            };
        }
        if window.taken >= self.limit.limit {
            return Err(self.limit.window.saturating_sub(window.started.elapsed()));
        }
        window.taken += 1;
        Ok(())
    }

    /// Undo one [`take`](Self::take) (of the current window).
    pub fn give_back(&self, key: &str) {
        if let Some(entry) = self.windows.get(key) {
            let mut window = entry.lock().unwrap_or_else(PoisonError::into_inner);
            window.taken = window.taken.saturating_sub(1);
        }
    }

    /// Forget every attempt of `key`.
    pub fn forget(&self, key: &str) {
        self.windows.invalidate(key);
    }
}

pub struct MemoryLoginThrottle {
    accounts: AttemptCounter,
    ips: AttemptCounter,
}

impl MemoryLoginThrottle {
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            accounts: AttemptCounter::new(limits.per_account),
            ips: AttemptCounter::new(limits.per_ip),
        }
    }
}

#[async_trait]
impl LoginThrottle for MemoryLoginThrottle {
    async fn reserve(&self, ip: Option<IpAddr>, account: &str) -> Result<(), Duration> {
        self.accounts.take(account)?;
        if let Some(ip) = ip
            && let Err(wait) = self.ips.take(&ip.to_string())
        {
            self.accounts.give_back(account);
            return Err(wait);
        }
        Ok(())
    }

    async fn succeeded(&self, ip: Option<IpAddr>, account: &str) {
        self.accounts.forget(account);
        if let Some(ip) = ip {
            self.ips.give_back(&ip.to_string());
        }
    }
}

/// The client's address (see [`orderly_http::client_ip::client_ip`]); `None` when
/// the server did not record the peer (a router driven without a socket, as in tests).
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
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
    async fn an_account_is_blocked_after_its_attempts_whatever_the_ip() {
        let throttle = MemoryLoginThrottle::new(limits(3, 100));
        for i in 0..3u8 {
            let ip = Some(IpAddr::from([10, 0, 0, i]));
            assert!(throttle.reserve(ip, "a@x.io").await.is_ok());
        }
        let wait = throttle
            .reserve(Some(IpAddr::from([10, 0, 0, 9])), "a@x.io")
            .await
            .unwrap_err();
        assert!(wait <= Duration::from_secs(900) && wait > Duration::from_secs(800));
        assert!(throttle.reserve(None, "b@x.io").await.is_ok());
    }

    #[tokio::test]
    async fn an_ip_is_blocked_across_accounts_and_success_resets_the_account() {
        let throttle = MemoryLoginThrottle::new(limits(2, 3));
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        for account in ["a", "b", "c"] {
            assert!(throttle.reserve(ip, account).await.is_ok());
        }
        assert!(throttle.reserve(ip, "d").await.is_err());
        // The refused attempt took nothing from the account.
        let other = Some(IpAddr::from([192, 0, 2, 2]));
        assert!(throttle.reserve(other, "d").await.is_ok());
        assert!(throttle.reserve(other, "d").await.is_ok());
        assert!(throttle.reserve(other, "d").await.is_err());

        assert!(throttle.reserve(None, "e").await.is_ok());
        assert!(throttle.reserve(None, "e").await.is_ok());
        assert!(throttle.reserve(None, "e").await.is_err());
        throttle.succeeded(None, "e").await;
        assert!(throttle.reserve(None, "e").await.is_ok());
    }

    #[tokio::test]
    async fn a_success_gives_the_ip_slot_back() {
        let throttle = MemoryLoginThrottle::new(limits(100, 2));
        let ip = Some(IpAddr::from([192, 0, 2, 9]));
        for _ in 0..5 {
            assert!(throttle.reserve(ip, "ok").await.is_ok());
            throttle.succeeded(ip, "ok").await;
        }
        assert!(throttle.reserve(ip, "x").await.is_ok());
        assert!(throttle.reserve(ip, "y").await.is_ok());
        assert!(throttle.reserve(ip, "z").await.is_err());
    }

    #[test]
    fn of_many_concurrent_takers_exactly_the_limit_get_through() {
        let counter = Arc::new(AttemptCounter::new(RateLimit {
            limit: 5,
            window: Duration::from_secs(900),
        }));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || counter.take("victim").is_ok())
            })
            .collect();
        let passed = threads
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let trusted: TrustedProxies = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(Some(proxy), &headers, &trusted),
            Some("2.2.2.2".parse().unwrap())
        );
        assert_eq!(
            client_ip(Some(proxy), &headers, &TrustedProxies::default()),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(client_ip(None, &headers, &trusted), None);
    }
}
