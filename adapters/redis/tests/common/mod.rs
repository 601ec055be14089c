//! What the Redis queue tests share: a unique key prefix per test on the shared
//! Redis (DB 0 for the queue, DB 1 for results), its keys deleted afterwards,
//! and a private `redis-server` with an append-only file that can be killed
//! and started again on the same data.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A `redis-server` of the test's own that persists every write (AOF,
/// `appendfsync always`), so a SIGKILL and a start on the same directory keep
/// everything that was acknowledged. Killed (by its PID) on drop.
pub struct DurableRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DurableRedis {
    /// `None` when `redis-server` cannot run (after the testkit's missing rule).
    pub fn start() -> Option<Self> {
        let mut r = Self {
            port: orderly_testkit::free_port(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
            child: None,
        };
        match r.restart() {
            Ok(()) => Some(r),
            Err(e) => orderly_testkit::missing("redis-server", e),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        self.child = Some(child);
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!("redis-server on port {} never answered", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no shutdown save; only the AOF keeps the data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
