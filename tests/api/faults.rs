//! What the fault-injection tests share (queue_chaos, chaos, shutdown,
//! embedded_nats): a replayable random schedule, the run's Redis keys, process
//! guards, `orderly broker` on a chosen port, and log excerpts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::TestApp;

/// splitmix64: a seeded sequence, so a failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `var` when it holds a number, at random otherwise; prints
    /// the seed and how to replay it.
    pub fn from_env(var: &str, what: &str) -> (Self, u64) {
        let seed = std::env::var(var)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
        println!("{what} seed {seed} ({var}={seed} replays the schedule)");
        (Self(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration in `[from, to)`, to the millisecond.
    pub fn between(&mut self, from: Duration, to: Duration) -> Duration {
        let span = to.saturating_sub(from).as_millis().max(1) as u64;
        from + Duration::from_millis(self.below(span))
    }
}

/// A run's keys on the shared Redis (DB 0 queue, DB 1 results) under a unique
/// prefix, deleted on drop.
pub struct RedisKeys {
    pub base_url: String,
    pub prefix: String,
}

impl RedisKeys {
    pub fn new() -> Self {
        Self {
            base_url: orderly_testkit::redis_url()
                .trim_end_matches('/')
                .to_string(),
            prefix: format!("orderly-test-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// The queue's URL (DB 0).
    pub fn queue_url(&self) -> String {
        format!("{}/0", self.base_url)
    }
}

impl Drop for RedisKeys {
    fn drop(&mut self) {
        for db in [0, 1] {
            let Ok(client) = redis::Client::open(format!("{}/{db}", self.base_url)) else {
                continue;
            };
            let Ok(mut conn) = client.get_connection() else {
                continue;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}

/// Kills the child on drop (by its PID, through `Child`).
pub struct Killed(pub Child);

impl Killed {
    /// SIGKILL now and wait until it is gone.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `orderly broker` on `data_dir`, listening on `listen` (`127.0.0.1:0`: a
/// port the OS picks); returns it and its `nats://` URL once it listens.
pub fn start_orderly_broker(data_dir: &Path, listen: &str) -> (Killed, String) {
    std::fs::create_dir_all(data_dir).expect("broker data dir");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("broker.log"))
        .expect("broker log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("broker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .env("ORDERLY_BROKER_LISTEN", listen)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start orderly broker");
    let stdout = child.stdout.take().expect("broker stdout");
    let guard = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("broker: ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "orderly broker did not announce its URL; log:\n{}",
                std::fs::read_to_string(data_dir.join("broker.log")).unwrap_or_default()
            )
        });
    (guard, url)
}

pub fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

pub fn all_logs(apps: &[&TestApp]) -> String {
    apps.iter()
        .map(|a| format!("=== {}\n{}", a.data_dir.display(), a.logs()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `n` lines: enough to see why, without drowning the report.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub async fn paid(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
        .fetch_one(pool)
        .await
        .expect("count PAID orders")
}
