//! The job queue on Redis, black-box: processes of the built binary
//! with `CELERY_BROKER_URL` (the compat alias) pointing at the shared Redis,
//! each test under its own `JOB_QUEUE_PREFIX`, its keys deleted afterwards.
//! Without Redis: a failure with CI=true, a loud skip otherwise.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orderly_bus::{JobQueue, NewJob, RetryPolicy};
use orderly_redis::{RedisQueue, RedisQueueConfig};
use serde_json::Value;

use crate::helpers::{logs_when, one_item_order, spawn_app_with, start_role};

const QUEUE: &str = "process_order";

/// The test's keys on the shared Redis (DB 0 queue, DB 1 results), deleted on drop.
struct Keys {
    base_url: String,
    prefix: String,
}

impl Keys {
    async fn new() -> Option<Self> {
        orderly_testkit::shared_redis().await?;
        Some(Self {
            base_url: orderly_testkit::redis_url()
                .trim_end_matches('/')
                .to_string(),
            prefix: format!("orderly-test-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CELERY_BROKER_URL".into(), format!("{}/0", self.base_url)),
            ("JOB_QUEUE_PREFIX".into(), self.prefix.clone()),
        ]
    }

    async fn queue(&self, max_retries: u32) -> RedisQueue {
        let mut c = RedisQueueConfig::new(format!("{}/0", self.base_url));
        c.results_url = Some(format!("{}/1", self.base_url));
        c.prefix = self.prefix.clone();
        c.policy = RetryPolicy {
            max_retries,
            ..RetryPolicy::default()
        };
        RedisQueue::connect(c)
            .await
            .expect("the test's Redis queue")
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        for db in [0, 1] {
            let Ok(client) = redis::Client::open(format!("{}/{db}", self.base_url)) else {
                continue;
            };
            let Ok(mut conn) = client.get_connection() else {
                continue;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        }
    }
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `orderly jobs <args>` with `env`; (success, stdout + stderr).
fn jobs_cli(data_dir: &Path, env: &[(String, String)], args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("jobs")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run orderly jobs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

async fn wait_until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Through a real worker process: a job whose order does not
/// exist fails every time, runs 1 + 3 times, and is dead with its four errors;
/// `orderly jobs dead` shows them, `orderly jobs requeue` runs it again,
/// `orderly jobs purge-dead` empties the dead letters.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_job_is_dead_after_three_retries_and_the_cli_requeues_and_purges_it() {
    let Some(keys) = Keys::new().await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut env = keys.env();
    env.extend([
        ("JOB_RETRY_BASE_MS".into(), "100".into()),
        ("WORKER_PAYMENT_DELAY_MS".into(), "10".into()),
    ]);
    let worker = start_role("worker", &tmp.path().join("worker"), &as_refs(&env), 0).await;
    let q = keys.queue(3).await;
    let order_id = uuid::Uuid::new_v4();
    let job_id = format!("process_order:test-{order_id}");
    let payload = serde_json::json!({ "order_id": order_id }).to_string();
    assert!(
        q.enqueue(NewJob {
            queue: QUEUE.into(),
            id: job_id.clone(),
            payload: payload.into(),
        })
        .await
        .unwrap()
    );
    let started = format!("Starting to process order {order_id}");
    wait_until("the job is dead", Duration::from_secs(60), async || {
        q.stats(QUEUE).await.unwrap().dead == 1
    })
    .await;
    let logs = logs_when(|| worker.logs(), |l| count(l, &started) >= 4).await;
    assert_eq!(count(&logs, &started), 4, "runs: 1 + 3 retries\n{logs}");

    let cli_dir = tmp.path().join("cli");
    let (ok, stats) = jobs_cli(&cli_dir, &env, &["stats"]);
    assert!(ok, "{stats}");
    assert!(
        stats
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["dead", "1"]),
        "{stats}"
    );
    let (ok, dead) = jobs_cli(&cli_dir, &env, &["dead"]);
    assert!(ok, "{dead}");
    assert!(dead.contains(&format!("{job_id}  attempts: 4")), "{dead}");
    assert_eq!(
        count(&dead, &format!("order {order_id} not found")),
        4,
        "every attempt's error:\n{dead}"
    );
    assert!(dead.contains("error 4:"), "{dead}");

    let (ok, out) = jobs_cli(&cli_dir, &env, &["requeue", &job_id]);
    assert!(ok && out.contains(&format!("requeued {job_id}")), "{out}");
    wait_until(
        "the requeued job runs again",
        Duration::from_secs(30),
        async || count(&worker.logs(), &started) >= 5,
    )
    .await;
    let (ok, out) = jobs_cli(&cli_dir, &env, &["requeue", "no-such-job"]);
    assert!(!ok && out.contains("no dead job"), "{out}");

    // It fails again, so it is dead again after its retries: purge it.
    wait_until("dead again", Duration::from_secs(60), async || {
        q.stats(QUEUE).await.unwrap().dead == 1
    })
    .await;
    let (ok, out) = jobs_cli(&cli_dir, &env, &["purge-dead"]);
    assert!(ok && out.contains("purged 1 dead jobs"), "{out}");
    let (ok, out) = jobs_cli(&cli_dir, &env, &["dead"]);
    assert!(ok && out.contains("no dead jobs"), "{out}");
    drop(worker);
}

/// The worker holding a job is SIGKILLed mid-payment; a worker in
/// another process takes the job over once its visibility timeout passes, and
/// the order is PAID with exactly one PENDING -> PAID change.
///
/// Process 1 is `orderly all` (its own data dir, SQLite, embedded bus); the job
/// is in Redis. Process 2 is `orderly worker` with another data dir (the
/// embedded bus's directory can be opened by one process only) and the orders
/// database of process 1, which is dead by then (SQLite is not shared live).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_of_a_sigkilled_worker_is_finished_by_another_worker_and_paid_once() {
    let Some(keys) = Keys::new().await else {
        return;
    };
    let mut env = keys.env();
    env.extend([
        ("WORKER_PAYMENT_DELAY_MS".into(), "60000".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "2".into()),
    ]);
    let mut first = spawn_app_with(&as_refs(&env)).await;
    let (_, token) = first.user("sigkill@example.com").await;
    let order: Value = first
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap().to_string();
    let started = format!("Starting to process order {id}");
    wait_until(
        "process 1 starts the job",
        Duration::from_secs(30),
        async || first.logs().contains(&started),
    )
    .await;
    first.kill();
    let killed_at = Instant::now();

    let orders_db = format!(
        "sqlite://{}?mode=rwc",
        first.data_dir.join("orders.db").display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut env2 = keys.env();
    env2.extend([
        ("ORDERS_DATABASE_URL".into(), orders_db.clone()),
        ("WORKER_PAYMENT_DELAY_MS".into(), "100".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "2".into()),
    ]);
    let second = start_role("worker", &tmp.path().join("data"), &as_refs(&env2), 0).await;
    let pool = sqlx::SqlitePool::connect(&orders_db).await.unwrap();
    let status = async || -> String {
        sqlx::query_scalar("SELECT status FROM orders WHERE id = ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().await != "PAID" {
        assert!(
            Instant::now() < deadline,
            "order {id} never became PAID; worker 2 log:\n{}",
            second.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "paid by the second worker {:?} after the SIGKILL (visibility timeout 2 s)",
        killed_at.elapsed()
    );
    let logs = logs_when(|| second.logs(), |l| l.contains(&started)).await;
    assert!(logs.contains(&started), "worker 2 ran the job:\n{logs}");
    let history: Vec<(Option<String>, String)> = sqlx::query_as(
        "SELECT from_status, to_status FROM order_status_history WHERE order_id = ? ORDER BY id",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let paid: Vec<_> = history.iter().filter(|(_, to)| to == "PAID").collect();
    assert_eq!(
        paid,
        [&(Some("PENDING".to_string()), "PAID".to_string())],
        "history: {history:?}"
    );
    let q = keys.queue(3).await;
    let s = q.stats(QUEUE).await.unwrap();
    assert_eq!((s.waiting, s.running, s.dead), (0, 0, 0), "{s:?}");
    pool.close().await;
    drop(second);
}

/// With the embedded queue, `orderly jobs` opens the data directory: refused
/// with a clear reason while `orderly all` holds it, fine once it stopped.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_cli_on_the_embedded_queue_says_when_the_data_dir_is_in_use() {
    let mut app = spawn_app_with(&[]).await;
    let env = [("JOB_QUEUE".to_string(), "embedded".to_string())];
    let (ok, out) = jobs_cli(&app.data_dir, &env, &["stats"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("is in use by another orderly process") && out.contains("orderly all"),
        "{out}"
    );
    app.kill();
    let (ok, out) = jobs_cli(&app.data_dir, &env, &["stats"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("queue process_order:") && out.contains("dead"),
        "{out}"
    );
    let (ok, out) = jobs_cli(&app.data_dir, &env, &["purge-dead"]);
    assert!(ok && out.contains("purged 0 dead jobs"), "{out}");
}
