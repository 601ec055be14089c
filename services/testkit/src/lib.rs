//! What tests that need real services share: a fresh PostgreSQL database per test
//! (dropped afterwards, also when the test panics), a private `redis-server` on a
//! free port, and the rule for a missing service: with `CI=true` it fails the test,
//! otherwise the test is skipped with a loud reason on stderr.
//!
//! `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`, the
//! maintenance database) and `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`)
//! point the tests at other servers.
//!
//! [`hostile`] holds proptest strategies for hostile HTTP input; [`openapi`]
//! checks a service's routes against its OpenAPI document; [`contract`]
//! checks error bodies.

pub mod contract;
pub mod hostile;
pub mod in_process;
pub mod openapi;
pub mod redis_server;

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

/// The maintenance database tests create their databases through.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The shared Redis the tests use (keys always carry a per-test unique part).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A required service is missing: panic under CI, otherwise say so loudly.
/// Returns `None` so callers can `let Some(x) = … else { return };`.
pub fn missing<T>(service: &str, why: impl std::fmt::Display) -> Option<T> {
    if in_ci() {
        panic!("{service} is required when CI=true but is not usable: {why}");
    }
    eprintln!(
        "SKIPPED: {service} is not usable ({why}); start it or set CI=true to make this a failure"
    );
    None
}

/// A database created for one test, dropped when this value is dropped.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl TestDatabase {
    /// `orderly_test_<uuid>`, created through the maintenance database. `None`
    /// (after [`missing`]) when PostgreSQL cannot be reached.
    pub async fn create() -> Option<Self> {
        let admin_url = postgres_admin_url();
        let mut admin =
            match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&admin_url))
                .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return missing("PostgreSQL", format!("{admin_url}: {e}")),
                Err(_) => return missing("PostgreSQL", format!("{admin_url}: connect timed out")),
            };
        let name = format!("orderly_test_{}", uuid::Uuid::new_v4().simple());
        // The name is generated above from hex digits only, so it is safe to splice in.
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{name}"));
        Some(Self {
            url: url.to_string(),
            name,
            admin_url,
        })
    }
}

impl TestDatabase {
    /// (host, port, user, password) of the server, for the contract's
    /// `POSTGRES_*` variables.
    pub fn parts(&self) -> (String, u16, String, Option<String>) {
        let url = url::Url::parse(&self.url).expect("a URL made from a URL");
        (
            url.host_str().unwrap_or("localhost").to_string(),
            url.port().unwrap_or(5432),
            url.username().to_string(),
            url.password().map(str::to_string),
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside async tests (and while unwinding), so the cleanup gets its
        // own thread and runtime instead of blocking the test's runtime.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                // FORCE ends sessions the test left open (pools still closing).
                admin
                    .execute(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .await
                    .ok()?;
                let _ = admin.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// Whether the shared Redis answers; `None` (after [`missing`]) when it does not.
pub async fn shared_redis() -> Option<redis::Client> {
    let url = redis_url();
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => return missing("Redis", format!("{url}: {e}")),
    };
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), ping).await {
        Ok(Ok(_)) => Some(client),
        Ok(Err(e)) => missing("Redis", format!("{url}: {e}")),
        Err(_) => missing("Redis", format!("{url}: timed out")),
    }
}

/// A free TCP port on 127.0.0.1 (probed by binding port 0 and releasing it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A `redis-server` process of the test's own, without persistence. Killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Start on a free port; `None` (after [`missing`]) when `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        let port = free_port();
        let mut redis = Self { port, child: None };
        match redis.restart() {
            Ok(()) => Some(redis),
            Err(e) => missing("redis-server", e),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port and wait until it answers PING.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        let mut command = Command::new("redis-server");
        command.args(["--save", "", "--appendonly", "no"]);
        self.child = Some(redis_server::spawn_answering(
            command,
            self.port,
            Duration::from_secs(10),
        )?);
        Ok(())
    }

    /// Kill it (by its PID) and wait until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
