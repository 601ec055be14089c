//! [`RateLimiter`] on Redis, shared by every orders instance: a fixed window per
//! client, counted by one Lua script (INCR, PEXPIRE on the window's first hit,
//! PTTL) so concurrent requests on any instance are counted exactly.
//!
//! Redis unreachable: by default requests pass uncounted ("fail open": logged at
//! most every 10 s, counted in `rate_limiter_errors_total`); with
//! `ORDERS_RATE_LIMIT_FAIL_CLOSED=true` they are refused with 503 (the client
//! did nothing wrong, so not 429).

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use orderly_core::config::RateLimit;
use orderly_redis::RedisTls;

use crate::limiter::{Decision, LimiterUnavailable, RateLimiter};
use crate::redis_gate::{Gate, bounded, connect_lazy, ping};

const SCRIPT: &str = r#"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  -- A counter without expiry would block its client for good.
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"#;

pub struct RedisLimiter {
    conn: ConnectionManager,
    rule: RateLimit,
    prefix: String,
    fail_closed: bool,
    gate: Gate,
    script: redis::Script,
}

impl RedisLimiter {
    /// Keys are `{prefix}{client}`. Connects on first use.
    pub fn new(
        url: &str,
        tls: &RedisTls,
        rule: RateLimit,
        prefix: &str,
        fail_closed: bool,
    ) -> Result<Self, String> {
        Ok(Self {
            conn: connect_lazy(url, tls)?,
            rule,
            prefix: prefix.to_string(),
            fail_closed,
            gate: Gate::new("rate limiter", "rate_limiter_errors_total"),
            script: redis::Script::new(SCRIPT),
        })
    }

    /// `PING` for `/ready`.
    pub async fn ping(&self) -> Result<(), String> {
        ping(&self.conn).await
    }

    fn without_redis(&self) -> Result<Decision, LimiterUnavailable> {
        if self.fail_closed {
            metrics::counter!("rate_limiter_unavailable_total", "mode" => "closed").increment(1);
            return Err(LimiterUnavailable);
        }
        metrics::counter!("rate_limiter_unavailable_total", "mode" => "open").increment(1);
        Ok(Decision {
            allowed: true,
            limit: self.rule.limit,
            remaining: self.rule.limit,
            reset_after: self.rule.window.as_secs().max(1),
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(&self, client: &str) -> Result<Decision, LimiterUnavailable> {
        if !self.gate.open() {
            return self.without_redis();
        }
        let mut conn = self.conn.clone();
        let window_ms = self.rule.window.as_millis().max(1) as u64;
        let key = format!("{}{client}", self.prefix);
        let counted = bounded(
            self.script
                .key(key)
                .arg(window_ms)
                .invoke_async::<(u64, i64)>(&mut conn),
        )
        .await;
        match counted {
            Ok((count, ttl_ms)) => {
                self.gate.succeeded();
                let count = u32::try_from(count).unwrap_or(u32::MAX);
                Ok(Decision {
                    allowed: count <= self.rule.limit,
                    limit: self.rule.limit,
                    remaining: self.rule.limit.saturating_sub(count),
                    reset_after: (ttl_ms.max(0) as u64).div_ceil(1000).max(1),
                })
            }
            Err(e) => {
                self.gate.failed("hit", &e);
                self.without_redis()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rule() -> RateLimit {
        RateLimit {
            limit: 10,
            window: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn instances_sharing_redis_count_together_and_the_eleventh_is_refused() {
        let Some(_) = orderly_testkit::shared_redis().await else {
            return;
        };
        let url = format!("{}/2", orderly_testkit::redis_url());
        let prefix = format!("test:{}:", uuid::Uuid::new_v4());
        let a = RedisLimiter::new(&url, &RedisTls::default(), rule(), &prefix, false).unwrap();
        let b = RedisLimiter::new(&url, &RedisTls::default(), rule(), &prefix, false).unwrap();
        for i in 0..10u32 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            let d = limiter.hit("10.0.0.1").await.unwrap();
            assert!(d.allowed, "request {}", i + 1);
            assert_eq!(d.remaining, 9 - i);
            assert!((1..=60).contains(&d.reset_after), "{d:?}");
        }
        let d = b.hit("10.0.0.1").await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(
            a.hit("10.0.0.2").await.unwrap().allowed,
            "clients count apart"
        );
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let key = format!("{prefix}10.0.0.1");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60_000, "the window expires: {ttl}");
        let _: i64 = redis::cmd("DEL")
            .arg(&key)
            .arg(format!("{prefix}10.0.0.2"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_redis_it_fails_open_by_default_and_closed_when_configured() {
        // Nothing listens on a port just released.
        let url = format!("redis://127.0.0.1:{}", orderly_testkit::free_port());
        let open = RedisLimiter::new(&url, &RedisTls::default(), rule(), "p:", false).unwrap();
        let closed = RedisLimiter::new(&url, &RedisTls::default(), rule(), "p:", true).unwrap();
        for _ in 0..3 {
            let d = tokio::time::timeout(Duration::from_secs(5), open.hit("c"))
                .await
                .expect("a dead Redis does not stall the request")
                .unwrap();
            assert!(d.allowed);
            let refused = tokio::time::timeout(Duration::from_secs(5), closed.hit("c"))
                .await
                .expect("a dead Redis does not stall the request");
            assert_eq!(refused, Err(LimiterUnavailable));
        }
        assert!(open.ping().await.is_err());
    }
}
