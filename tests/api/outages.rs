//! Outages of a dependency while orders keep coming: 60 s of the job queue's
//! Redis, 30 s of PostgreSQL, each a server the test starts itself (a
//! `redis-server` with an append-only file on its own port; a PostgreSQL
//! cluster made with initdb/pg_ctl in a temp dir, run as the `postgres`
//! user), never the machine's shared ones.
//!
//! One `orderly all` (auth, orders, relay, embedded bus, consumer, worker,
//! reconciler) on the test's PostgreSQL, its job queue on the test's Redis.
//! A client creates an order every 250 ms before, during and after the
//! outage. Every answer is 200 or 503 (never a 500, never a hang: the client
//! gives up after 20 s). After the dependency returns, every order accepted
//! with a 200 is PAID with exactly one PENDING -> PAID change and one payment
//! log line, and nothing is in the dead letters of the bus or the job queue.
//! The test prints those counts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use orderly_bus::JobQueue;
use orderly_redis::{RedisQueue, RedisQueueConfig};
use serde_json::Value;

use crate::faults::tail;
use crate::helpers::{TestApp, one_item_order, start_role};

const REDIS_DOWN: Duration = Duration::from_secs(60);
const POSTGRES_DOWN: Duration = Duration::from_secs(30);
/// Orders created before the outage starts and after it ends.
const LOAD_AROUND: Duration = Duration::from_secs(5);
const ORDER_EVERY: Duration = Duration::from_millis(250);
/// A create answered later than this counts as a hang.
const HANG: Duration = Duration::from_secs(20);
/// The reconciler's threshold in these runs.
const RECONCILE_AFTER_S: u64 = 5;
/// After the dependency returns: the bound on every accepted order being PAID
/// (the threshold, the reconciler's period and the payments, with room for a
/// slow machine).
const SETTLE: Duration = Duration::from_secs(RECONCILE_AFTER_S + 85);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_60s_outage_of_the_job_queues_redis_strands_no_order() {
    outage(Dependency::Redis, REDIS_DOWN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_30s_outage_of_postgresql_strands_no_order() {
    outage(Dependency::Postgres, POSTGRES_DOWN).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    Redis,
    Postgres,
}

async fn outage(dependency: Dependency, down_for: Duration) {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mut redis) = DurableRedis::create(&tmp.path().join("redis")) else {
        return;
    };
    let Some(mut postgres) = OwnPostgres::create(tmp.path()) else {
        return;
    };
    let orders_url = postgres.create_database("orders");
    let queue_url = format!("{}/0", redis.url());
    let env: Vec<(&str, &str)> = vec![
        // The queue alone on Redis: the cache and the limiter stay in-process.
        ("CELERY_BROKER_URL", queue_url.as_str()),
        ("ORDERS_DATABASE_URL", orders_url.as_str()),
        ("WORKER_PAYMENT_DELAY_MS", "100"),
        ("RECONCILE_SCHEDULE", "*/2 * * * * *"),
        ("RECONCILE_AFTER_SECONDS", "5"),
        ("RECONCILE_BATCH", "1000"),
        ("RUST_LOG", "info,sqlx=warn,access=warn"),
    ];
    let app = start_role("all", &tmp.path().join("data"), &env, 0).await;
    let (_, token) = app.user("outage@example.com").await;

    let load = Load::start(&app, token);
    tokio::time::sleep(LOAD_AROUND).await;
    let down_at = Instant::now();
    match dependency {
        Dependency::Redis => redis.stop(),
        Dependency::Postgres => postgres.stop(),
    }
    tokio::time::sleep(down_for).await;
    match dependency {
        Dependency::Redis => redis.start().expect("redis-server starts again"),
        Dependency::Postgres => postgres.start().expect("PostgreSQL starts again"),
    }
    let back_at = Instant::now();
    println!(
        "{dependency:?} down for {:?}",
        back_at.duration_since(down_at)
    );
    tokio::time::sleep(LOAD_AROUND).await;
    let answers = load.finish().await;

    let accepted: Vec<String> = answers.iter().filter_map(|a| a.order_id.clone()).collect();
    let unavailable = answers.iter().filter(|a| a.status == Some(503)).count();
    let slowest_503 = answers
        .iter()
        .filter(|a| a.status == Some(503))
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    let other: Vec<&Answer> = answers
        .iter()
        .filter(|a| !matches!(a.status, Some(200) | Some(503)))
        .collect();

    let pool = sqlx::PgPool::connect(&orders_url).await.unwrap();
    let paid = |pool: sqlx::PgPool, ids: Vec<String>| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE status = 'PAID' AND id::text = ANY($1)",
        )
        .bind(&ids)
        .fetch_one(&pool)
        .await
        .expect("count PAID orders");
        n as usize
    };
    let settle_deadline = Instant::now() + SETTLE;
    let mut paid_now = paid(pool.clone(), accepted.clone()).await;
    while paid_now < accepted.len() && Instant::now() < settle_deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        paid_now = paid(pool.clone(), accepted.clone()).await;
    }
    let all_paid_after = back_at.elapsed();
    let changes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_id::text, COUNT(*) FROM order_status_history \
         WHERE from_status = 'PENDING' AND to_status = 'PAID' GROUP BY order_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let paid_twice: Vec<&(String, i64)> = changes.iter().filter(|(_, n)| *n != 1).collect();
    let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'PENDING'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;

    let mut config = RedisQueueConfig::new(queue_url.clone());
    config.prefix = crate::helpers::job_queue_prefix(&app.data_dir);
    let queue = RedisQueue::connect(config).await.expect("the run's queue");
    let jobs = queue.stats("process_order").await.unwrap();
    let logs = app.logs();
    let payment_lines = logs.matches("successfully updated to PAID").count();
    let bus_dead = logs.matches("message moved to the dead letters").count();
    let requeued = logs.matches("PENDING without a job").count();
    println!(
        "{dependency:?} outage of {down_for:?}: {} creates answered: {} accepted (200), \
         {unavailable} refused with 503 (slowest {slowest_503:?}), {} other; \
         {paid_now} of the accepted PAID {all_paid_after:?} after the dependency returned, \
         {} PENDING -> PAID changes, {} orders paid more than once, {pending} PENDING; \
         {payment_lines} payment log lines; {requeued} jobs enqueued again by the reconciler; \
         dead letters: {bus_dead} on the bus, {} in the job queue",
        answers.len(),
        accepted.len(),
        other.len(),
        changes.len(),
        paid_twice.len(),
        jobs.dead,
    );

    let excerpt = || tail(&logs, 60);
    assert!(
        other.is_empty(),
        "answers other than 200 and 503 (None: no answer within {HANG:?}): {:?}",
        other.iter().take(10).collect::<Vec<_>>()
    );
    assert!(!accepted.is_empty(), "no order was accepted");
    assert_eq!(
        paid_now,
        accepted.len(),
        "accepted orders not PAID within {SETTLE:?} of the return; log:\n{}",
        excerpt()
    );
    assert!(paid_twice.is_empty(), "paid more than once: {paid_twice:?}");
    assert_eq!(changes.len(), accepted.len(), "PENDING -> PAID changes");
    assert_eq!(payment_lines, accepted.len(), "payment log lines");
    assert_eq!(pending, 0, "orders left PENDING");
    assert_eq!(
        (bus_dead, jobs.dead),
        (0, 0),
        "dead letters (bus, job queue); log:\n{}",
        excerpt()
    );
    drop(app);
}

/// One create request's fate.
#[derive(Debug, Clone)]
struct Answer {
    /// `None`: no answer within [`HANG`] (or no connection).
    status: Option<u16>,
    took: Duration,
    order_id: Option<String>,
}

/// Creates an order every [`ORDER_EVERY`], each request on its own, so one
/// slow answer does not hold the next.
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<Answer>>,
}

impl Load {
    fn start(app: &TestApp, token: String) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let http = reqwest::Client::builder().timeout(HANG).build().unwrap();
        let url = format!("{}/orders/", app.orders_url);
        let task = tokio::spawn(async move {
            let answers = Arc::new(Mutex::new(Vec::new()));
            let mut requests = Vec::new();
            let mut tick = tokio::time::interval(ORDER_EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (http, url, token, answers) =
                    (http.clone(), url.clone(), token.clone(), answers.clone());
                requests.push(tokio::spawn(async move {
                    let started = Instant::now();
                    let sent = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&one_item_order())
                        .send()
                        .await;
                    let answer = match sent {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let body: Value = r.json().await.unwrap_or_default();
                            Answer {
                                status: Some(status),
                                took: started.elapsed(),
                                order_id: (status == 200)
                                    .then(|| body["id"].as_str().map(str::to_string))
                                    .flatten(),
                            }
                        }
                        Err(_) => Answer {
                            status: None,
                            took: started.elapsed(),
                            order_id: None,
                        },
                    };
                    answers.lock().unwrap().push(answer);
                }));
            }
            for r in requests {
                let _ = r.await;
            }
            answers.lock().unwrap().clone()
        });
        Self { stop, task }
    }

    async fn finish(self) -> Vec<Answer> {
        let _ = self.stop.send(true);
        self.task.await.expect("the load task")
    }
}

/// A `redis-server` of the test's own whose data survives a stop: an
/// append-only file synced at every write, in `dir`. Stopped with SIGKILL.
struct DurableRedis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl DurableRedis {
    /// Started on a free port, its files in `dir`.
    fn create(dir: &Path) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let mut redis = Self {
            dir: dir.to_path_buf(),
            port: orderly_testkit::free_port(),
            child: None,
        };
        match redis.start() {
            Ok(()) => Some(redis),
            Err(e) => orderly_testkit::missing("redis-server", e),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir);
        let patience = Duration::from_secs(30);
        self.child = Some(orderly_testkit::redis_server::spawn_answering(
            command, self.port, patience,
        )?);
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own: initdb and pg_ctl run as the
/// `postgres` user (initdb refuses root) on a directory in the test's temp
/// dir, listening on 127.0.0.1 on a port of its own. Stopped with
/// `pg_ctl stop -m immediate` (no shutdown checkpoint: like a crash).
struct OwnPostgres {
    data: PathBuf,
    port: u16,
    running: bool,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl OwnPostgres {
    /// A new cluster under `tmp`, started.
    fn create(tmp: &Path) -> Option<Self> {
        let root = tmp.join("pg");
        std::fs::create_dir_all(&root).unwrap();
        // The postgres user must reach the directory through the temp dir.
        for dir in [tmp, root.as_path()] {
            let _ = Command::new("chmod").arg("755").arg(dir).status();
        }
        let owned = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&root)
            .status();
        if !owned.is_ok_and(|s| s.success()) {
            return orderly_testkit::missing(
                "PostgreSQL (own cluster)",
                "cannot chown to the postgres user",
            );
        }
        let mut pg = Self {
            data: root.join("data"),
            port: orderly_testkit::free_port(),
            running: false,
        };
        let initdb = as_postgres(&format!("{PG_BIN}/initdb"))
            .arg("-D")
            .arg(&pg.data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
            .stdout(Stdio::null())
            .output();
        match initdb {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return orderly_testkit::missing(
                    "PostgreSQL (own cluster)",
                    format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)),
                );
            }
            Err(e) => return orderly_testkit::missing("PostgreSQL (own cluster)", e),
        }
        match pg.start() {
            Ok(()) => Some(pg),
            Err(e) => orderly_testkit::missing("PostgreSQL (own cluster)", e),
        }
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn start(&mut self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.parent().unwrap().display()
        );
        let out = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.data.parent().unwrap().join("postgres.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        self.running = true;
        Ok(())
    }

    fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = as_postgres(&format!("{PG_BIN}/pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.running = false;
    }

    /// A fresh database on the cluster; its URL.
    fn create_database(&self, name: &str) -> String {
        let out = as_postgres(&format!("{PG_BIN}/createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `program` run as the `postgres` system user.
fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", program])
        .current_dir("/")
        .stdin(Stdio::null());
    cmd
}
