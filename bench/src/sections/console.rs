//! The console section: the server time of the overview's JSON
//! (`/console/api/overview`, what the page polls every 2 s) with 100k orders
//! in the orders database, on SQLite and on a fresh PostgreSQL database.
//!
//! The database is filled before `orderly all` starts: 100k orders created
//! evenly over the last 24 hours (about 70 a minute, so the chart's 15
//! minutes hold about a thousand), 82 % PAID, 10 % SHIPPED, 7 % CANCELED and
//! 1 % still PENDING (stuck: older than the reconciler's threshold), each
//! with its status history (created, then paid, shipped or canceled), and
//! the last hour's outbox rows, sent (what the relay's retention keeps);
//! PostgreSQL's then vacuumed and analyzed, as autovacuum would have.
//! Then the overview is asked for sequentially on one keep-alive connection:
//! the round trip on loopback is the server's time plus a few µs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::StatusCode;
use sqlx::Connection;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::{Client, Target};
use crate::ids::{ConsoleDb, MeasurementId};
use crate::postgres::Databases;
use crate::progress::Progress;
use crate::report::{Latency, Measurement, Report, micros_histogram};
use crate::sections::{Config, skip_reason_no_bin, summary};
use crate::spawn::{OrderlyProcess, SpawnOptions};

/// Orders in the database.
const ORDERS: usize = 100_000;
/// Overview requests measured, after [`WARMUP_REQUESTS`] not measured.
const REQUESTS: usize = 50;
const WARMUP_REQUESTS: usize = 5;
/// Rows per INSERT statement.
const BATCH: usize = 500;
/// The span the orders were created over.
const SPAN: Duration = Duration::from_secs(24 * 3600);

const NAME: &str = "console overview (/console/api/overview), 100k orders";

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    for db in [ConsoleDb::Sqlite, ConsoleDb::Postgres] {
        let m = Measurement::new(MeasurementId::Console(db), NAME, db.name());
        let m = match (&cfg.orderly_bin, db, &cfg.postgres_url) {
            (None, _, _) => m.skipped(skip_reason_no_bin()),
            (Some(_), ConsoleDb::Postgres, None) => m.skipped("--no-postgres"),
            (Some(bin), _, pg) => {
                let p = Progress::start(
                    format!("console {}", db.name()),
                    Duration::from_secs(60),
                    cfg.quiet,
                );
                let m = match run(bin, db, pg.as_deref()).await {
                    Ok(run) => run.into_measurement(m),
                    Err(e) => m.failed(format!("{e:#}")),
                };
                p.finish(&summary(&m));
                m
            }
        };
        r.measurements.push(m);
    }
}

/// What one database's run measured.
struct Run {
    latency_us: hdrhistogram::Histogram<u64>,
    seconds: f64,
    fill_seconds: f64,
    errors: u64,
}

impl Run {
    fn into_measurement(self, mut m: Measurement) -> Measurement {
        let count = self.latency_us.len();
        m.latency = Latency::from_micros(&self.latency_us);
        m.count = count;
        m.errors = self.errors;
        m.seconds = self.seconds;
        m.throughput = Some(count as f64 / self.seconds);
        m.extra.insert("orders".into(), ORDERS as f64);
        m.extra.insert("fill_s".into(), self.fill_seconds);
        if count == 0 {
            m = m.failed("no overview answered 200");
        }
        m
    }
}

async fn run(bin: &Path, db: ConsoleDb, pg_admin: Option<&str>) -> Result<Run> {
    let data_dir = tempfile::Builder::new()
        .prefix("orderly-bench-console-")
        .tempdir()?;
    let mut databases = None;
    let url = match (db, pg_admin) {
        (ConsoleDb::Postgres, Some(admin)) => {
            let mut dbs = Databases::connect(admin).await?;
            let url = dbs.create("console").await?;
            databases = Some(dbs);
            url
        }
        _ => format!("sqlite://{}", data_dir.path().join("orders.db").display()),
    };
    let outcome = measure(bin, db, &url, data_dir).await;
    if let Some(mut dbs) = databases {
        dbs.drop_all().await?;
    }
    outcome
}

async fn measure(bin: &Path, db: ConsoleDb, url: &str, data_dir: tempfile::TempDir) -> Result<Run> {
    migrate(bin, data_dir.path(), url)?;
    let started = Instant::now();
    fill(db, url).await.context("filling the orders database")?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let proc_ = OrderlyProcess::spawn(SpawnOptions {
        bin,
        env: vec![
            ("ORDERS_DATABASE_URL".into(), url.into()),
            ("ORDERLY_OPS_BIND".into(), "127.0.0.1:0".into()),
            // The PENDING orders stay stuck: the reconciler would have the
            // worker pay them while the overview is measured.
            ("RECONCILE_SCHEDULE".into(), "0 0 0 1 1 *".into()),
        ],
        data_dir: Some(data_dir),
        args: vec![],
    })?;
    let outcome = async {
        let target = Target::from_url(&proc_.ops_url).await?;
        let mut client = Client::new(target);
        let mut latency_us = micros_histogram();
        let mut errors = 0;
        for _ in 0..WARMUP_REQUESTS {
            overview(&mut client).await?;
        }
        let window = Instant::now();
        for _ in 0..REQUESTS {
            let sent = Instant::now();
            let answered = overview(&mut client).await;
            let took = sent.elapsed().as_micros() as u64;
            if answered.is_err() || latency_us.record(took).is_err() {
                errors += 1;
            }
        }
        Ok::<_, anyhow::Error>(Run {
            latency_us,
            seconds: window.elapsed().as_secs_f64(),
            fill_seconds,
            errors,
        })
    }
    .await;
    proc_.stop(Duration::from_secs(10));
    outcome
}

/// One overview; an error unless it is 200 with every source answering.
async fn overview(client: &mut Client) -> Result<()> {
    let (status, body) = client.get("/console/api/overview", None).await?;
    if status != StatusCode::OK {
        bail!("overview: {status}");
    }
    let text = String::from_utf8_lossy(&body);
    if text.contains("unavailable:") {
        bail!("overview with a source unavailable: {text}");
    }
    Ok(())
}

/// `orderly migrate` on the orders database (and a throwaway auth one).
fn migrate(bin: &Path, data_dir: &Path, url: &str) -> Result<()> {
    let out = Command::new(bin)
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .env("ORDERS_DATABASE_URL", url)
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .output()
        .context("orderly migrate")?;
    if !out.status.success() {
        bail!(
            "orderly migrate: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One order's rows, as SQL values.
struct Rows {
    orders: Vec<String>,
    history: Vec<String>,
    outbox: Vec<String>,
}

/// The orders, their history and the last hour's outbox rows, as the
/// orders store writes them (migrations/*/orders/0001_orders.sql).
fn rows(db: ConsoleDb, now: OffsetDateTime) -> Rows {
    let ts = |t: OffsetDateTime| {
        let text = t.format(&Rfc3339).unwrap_or_default();
        match db {
            ConsoleDb::Sqlite => format!("'{text}'"),
            ConsoleDb::Postgres => format!("'{text}'::timestamptz"),
        }
    };
    let mut out = Rows {
        orders: Vec::with_capacity(ORDERS),
        history: Vec::with_capacity(ORDERS * 2),
        outbox: Vec::new(),
    };
    let step = SPAN.as_secs_f64() / ORDERS as f64;
    for i in 0..ORDERS {
        // Oldest first, the last one a second ago.
        let created =
            now - SPAN + Duration::from_secs_f64(step * i as f64) - Duration::from_secs(1);
        let id = uuid::Uuid::new_v4();
        let user = 1 + (i % 5_000) as i64;
        // A fixed mix, spread evenly: 82 PAID, 10 SHIPPED, 7 CANCELED, 1 PENDING per 100.
        let status = match i % 100 {
            0..82 => "PAID",
            82..92 => "SHIPPED",
            92..99 => "CANCELED",
            _ => "PENDING",
        };
        // Paid 0.2–3 s after creation (the worker's payment), shipped an hour later.
        let paid = created + Duration::from_millis(200 + (i as u64 * 7919) % 2800);
        let shipped = paid + Duration::from_secs(3600);
        let canceled = created + Duration::from_secs(30);
        let updated = match status {
            "PAID" => paid,
            "SHIPPED" => shipped.min(now),
            "CANCELED" => canceled.min(now),
            _ => created,
        };
        out.orders.push(format!(
            "('{id}', {user}, '[{{\"name\":\"Bench item\",\"price\":12.5,\"quantity\":2}}]', 2500, '{status}', {}, {})",
            ts(created),
            ts(updated)
        ));
        out.history
            .push(format!("('{id}', NULL, 'PENDING', {})", ts(created)));
        match status {
            "PAID" | "SHIPPED" => {
                out.history
                    .push(format!("('{id}', 'PENDING', 'PAID', {})", ts(paid)));
                if status == "SHIPPED" {
                    out.history.push(format!(
                        "('{id}', 'PAID', 'SHIPPED', {})",
                        ts(shipped.min(now))
                    ));
                }
            }
            "CANCELED" => out.history.push(format!(
                "('{id}', 'PENDING', 'CANCELED', {})",
                ts(canceled.min(now))
            )),
            _ => {}
        }
        if now - created < Duration::from_secs(3600) {
            let event = uuid::Uuid::new_v4();
            out.outbox.push(format!(
                "('{event}', 'new_order', '{id}', '{{\"event-type\":\"new_order\"}}', \
                 '{{\"order_id\":\"{id}\",\"user_id\":{user}}}', {}, {})",
                ts(created),
                ts(created + Duration::from_millis(5))
            ));
        }
    }
    out
}

/// Writes [`rows`] in batches, in one transaction.
async fn fill(db: ConsoleDb, url: &str) -> Result<()> {
    let rows = rows(db, OffsetDateTime::now_utc());
    let mut sql = Vec::new();
    let inserts = [
        (
            "orders (id, user_id, items, total_cents, status, created_at, updated_at)",
            &rows.orders,
        ),
        (
            "order_status_history (order_id, from_status, to_status, changed_at)",
            &rows.history,
        ),
        (
            "outbox (event_id, subject, msg_key, headers, payload, created_at, sent_at)",
            &rows.outbox,
        ),
    ];
    for (table, values) in inserts {
        for chunk in values.chunks(BATCH) {
            sql.push(format!("INSERT INTO {table} VALUES {}", chunk.join(", ")));
        }
    }
    // PostgreSQL as autovacuum leaves a table that has run a while: with
    // statistics, and its visibility map set, without which the counts by
    // status cannot be read from the index alone (a sequential scan of the
    // orders instead: 30 ms more). SQLite plans without statistics, as
    // orderly leaves it.
    match db {
        ConsoleDb::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await?;
            let mut tx = conn.begin().await?;
            for s in sql {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            conn.close().await?;
        }
        ConsoleDb::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let mut tx = conn.begin().await?;
            for s in sql {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            sqlx::raw_sql("VACUUM ANALYZE").execute(&mut conn).await?;
            conn.close().await?;
        }
    }
    Ok(())
}
