//! What the Redis queue tests share: a unique key prefix per test on the shared
//! Redis (DB 0 for the queue, DB 1 for results), its keys deleted afterwards,
//! and (from the testkit) a private `redis-server` with an append-only file
//! that can be killed and started again on the same data.

#![allow(dead_code)]

use orderly_bus::RetryPolicy;
use orderly_redis::{RedisQueue, RedisQueueConfig};

/// The shared Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), no DB path.
pub fn shared_url() -> String {
    orderly_testkit::redis_url()
        .trim_end_matches('/')
        .to_string()
}

pub fn unique_prefix() -> String {
    format!("orderly-test-{}", uuid::Uuid::new_v4().simple())
}

pub fn config(base_url: &str, prefix: &str, policy: RetryPolicy) -> RedisQueueConfig {
    let mut c = RedisQueueConfig::new(format!("{base_url}/0"));
    c.results_url = Some(format!("{base_url}/1"));
    c.prefix = prefix.to_string();
    c.policy = policy;
    c
}

pub async fn connect(base_url: &str, prefix: &str, policy: RetryPolicy) -> RedisQueue {
    RedisQueue::connect(config(base_url, prefix, policy))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Redis at {base_url}: {e}"))
}

/// Deletes every key under `prefix` in DBs 0 and 1 when dropped (also on panic).
pub struct Cleanup {
    pub base_url: String,
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for db in [0, 1] {
            let Ok(client) = redis::Client::open(format!("{}/{db}", self.base_url)) else {
                continue;
            };
            let Ok(mut conn) = client.get_connection() else {
                continue;
            };
            let keys: Vec<String> = match redis::cmd("KEYS")
                .arg(format!("{}:*", self.prefix))
                .query(&mut conn)
            {
                Ok(k) => k,
                Err(_) => continue,
            };
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}
