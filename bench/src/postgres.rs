//! Fresh PostgreSQL databases for one run, and the create's own ceiling: its
//! two INSERTs (order + outbox row) in one transaction, by pgbench when
//! installed, else by sqlx from here.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::report::micros_histogram;

/// Databases created by the bench, dropped by [`Databases::drop_all`].
pub(crate) struct Databases {
    admin_url: String,
    pub(crate) names: Vec<String>,
}

fn db_url(admin_url: &str, db: &str) -> Result<String> {
    let mut url = url::Url::parse(admin_url).context("postgres URL")?;
    url.set_path(&format!("/{db}"));
    Ok(url.to_string())
}

impl Databases {
    /// Checks the server answers (within 3 s).
    pub(crate) async fn connect(admin_url: &str) -> Result<Self> {
        let conn = tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(admin_url))
            .await
            .map_err(|_| anyhow!("no answer from {admin_url} within 3 s"))??;
        conn.close().await?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            names: Vec::new(),
        })
    }

    /// Creates `orderly_bench_<uuid>_<suffix>`; returns its URL.
    pub(crate) async fn create(&mut self, suffix: &str) -> Result<String> {
        let name = format!("orderly_bench_{}_{suffix}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        // The name is ours (a UUID), never input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        conn.close().await?;
        self.names.push(name.clone());
        db_url(&self.admin_url, &name)
    }

    pub(crate) async fn drop_all(&mut self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url).await?;
        for name in std::mem::take(&mut self.names) {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .with_context(|| format!("DROP DATABASE {name}"))?;
        }
        conn.close().await?;
        Ok(())
    }
}

const ITEMS: &str = r#"[{"name":"Bench item","price":100.0,"quantity":1}]"#;

/// The create's statements as pgbench runs them (the table layout of
/// migrations/postgres/orders/0001_orders.sql).
const PGBENCH_SCRIPT: &str = r#"\set uid random(1, 1000000)
BEGIN;
INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) VALUES (gen_random_uuid(), :uid, '[{"name":"Bench item","price":100.0,"quantity":1}]', 10000, 'PENDING', now(), now());
INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES (gen_random_uuid(), 'new_order', 'k', '{"event-id":"e","event-type":"new_order"}', '{"order_id":"0191d6c5-6b8e-7c51-a0f3-1d2e3f4a5b6c","user_id":1,"timestamp":"2025-01-01T00:00:00Z"}', now());
COMMIT;
"#;

#[derive(Debug)]
pub(crate) struct InsertResult {
    pub(crate) tps: f64,
    pub(crate) latency_avg_ms: Option<f64>,
    pub(crate) latency: Option<crate::report::Latency>,
    pub(crate) count: u64,
    pub(crate) errors: u64,
}

pub(crate) fn pgbench_available() -> bool {
    Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// pgbench with the create's two INSERTs on `db_url` (whose schema orderly migrated).
pub(crate) async fn pgbench(
    db_url: &str,
    connections: usize,
    duration: Duration,
    scratch: &Path,
) -> Result<InsertResult> {
    pgbench_script(db_url, PGBENCH_SCRIPT, connections, duration, scratch).await
}

/// pgbench running `script` (a pgbench script's text) on `db_url`.
pub(crate) async fn pgbench_script(
    db_url: &str,
    script_text: &str,
    connections: usize,
    duration: Duration,
    scratch: &Path,
) -> Result<InsertResult> {
    let script = scratch.join(format!("script-{}.sql", uuid::Uuid::new_v4().simple()));
    std::fs::write(&script, script_text)?;
    let opts: PgConnectOptions = db_url.parse()?;
    let url = url::Url::parse(db_url)?;
    let mut cmd = tokio::process::Command::new("pgbench");
    cmd.arg("-n")
        .args(["-h", url.host_str().unwrap_or("127.0.0.1")])
        .args(["-p", &url.port().unwrap_or(5432).to_string()])
        .args(["-U", opts.get_username()])
        .args(["-c", &connections.to_string()])
        .args(["-j", &connections.min(2).to_string()])
        .args(["-T", &duration.as_secs().max(1).to_string()])
        .args(["-M", "prepared"])
        .arg("-f")
        .arg(&script)
        .arg(opts.get_database().unwrap_or("postgres"))
        .kill_on_drop(true);
    if !url.password().unwrap_or_default().is_empty() {
        cmd.env("PGPASSWORD", url.password().unwrap_or_default());
    }
    let out = cmd.output().await.context("run pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let number_after = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let tps = number_after("tps = ").ok_or_else(|| anyhow!("no tps in pgbench output:\n{text}"))?;
    let count = number_after("number of transactions actually processed: ").unwrap_or(0.0);
    let failed = number_after("number of failed transactions: ").unwrap_or(0.0);
    Ok(InsertResult {
        tps,
        latency_avg_ms: number_after("latency average = "),
        latency: None,
        count: count as u64,
        errors: failed as u64,
    })
}

/// The same two INSERTs in one transaction from sqlx (no pgbench installed).
pub(crate) async fn sqlx_inserts(
    db_url: &str,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> Result<InsertResult> {
    let opts: PgConnectOptions = db_url
        .parse::<PgConnectOptions>()?
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(connections as u32)
        .min_connections(connections as u32)
        .connect_with(opts)
        .await?;
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let pool = pool.clone();
        let errors = errors.clone();
        tasks.spawn(async move {
            let mut hist = micros_histogram();
            let mut count = 0u64;
            while Instant::now() < end {
                let t0 = Instant::now();
                let r: Result<(), sqlx::Error> = async {
                    let mut tx = pool.begin().await?;
                    sqlx::query("INSERT INTO orders (id, user_id, items, total_cents, status, created_at, updated_at) VALUES ($1, $2, $3::jsonb, $4, 'PENDING', now(), now())")
                        .bind(uuid::Uuid::new_v4())
                        .bind(1_i64)
                        .bind(ITEMS)
                        .bind(10_000_i64)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("INSERT INTO outbox (event_id, subject, msg_key, headers, payload, created_at) VALUES ($1, 'new_order', 'k', '{}'::jsonb, $2, now())")
                        .bind(uuid::Uuid::new_v4())
                        .bind(r#"{"order_id":"x","user_id":1}"#)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                }
                .await;
                let t1 = Instant::now();
                match r {
                    Ok(()) if t0 >= measure_from && t1 <= end => {
                        count += 1;
                        let _ = hist.record((t1 - t0).as_micros().max(1) as u64);
                    }
                    Ok(()) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (count, hist)
        });
    }
    let mut count = 0;
    let mut hist = micros_histogram();
    while let Some(j) = tasks.join_next().await {
        let (c, h) = j?;
        count += c;
        let _ = hist.add(&h);
    }
    pool.close().await;
    Ok(InsertResult {
        tps: count as f64 / duration.as_secs_f64(),
        latency_avg_ms: Some(hist.mean() / 1000.0),
        latency: crate::report::Latency::from_micros(&hist),
        count,
        errors: errors.load(Ordering::Relaxed),
    })
}
