//! 5,000 `process_order` jobs on the Redis queue, three
//! `orderly worker` processes, one of them SIGKILLed at random and started
//! again several times. Every order ends PAID with exactly one PENDING -> PAID
//! change in the orders database, and the queue has nothing waiting, running,
//! retrying, unacked or dead.
//!
//! Process A is `orderly all` (auth, orders, relay, embedded bus, consumer): the
//! embedded bus joins orders and the consumer only inside one process. It also
//! runs a worker, held to one slot (the least the settings allow); A is never
//! killed. The orders database is a fresh PostgreSQL database every process
//! shares; each process has its own data directory. Without PostgreSQL or
//! Redis: a failure with CI=true, a loud skip otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orderly_bus::JobQueue;
use orderly_redis::{RedisQueue, RedisQueueConfig};
use orderly_testkit::TestDatabase;

use crate::faults::{RedisKeys, Rng, all_logs, as_refs, paid, tail};
use crate::helpers::{one_item_order, start_role};

const QUEUE: &str = "process_order";
const ORDERS: usize = 5_000;
const WORKERS: usize = 3;
const KILLS: usize = 5;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread")]
async fn five_thousand_jobs_survive_random_worker_kills_and_each_pays_once() {
    let Some(orders_db) = TestDatabase::create().await else {
        return;
    };
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let keys = RedisKeys::new();
    let (mut rng, _) = Rng::from_env("QUEUE_CHAOS_SEED", "queue chaos");

    let common: Vec<(String, String)> = vec![
        ("JOB_QUEUE".into(), "redis".into()),
        // The compat alias rather than REDIS_URL: only the queue on Redis,
        // the orders cache and limiter stay per process (no shared keys).
        ("CELERY_BROKER_URL".into(), format!("{}/0", keys.base_url)),
        ("JOB_QUEUE_PREFIX".into(), keys.prefix.clone()),
        ("ORDERS_DATABASE_URL".into(), orders_db.url.clone()),
        ("WORKER_PAYMENT_DELAY_MS".into(), "20".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "2".into()),
        ("JOB_RETRY_BASE_MS".into(), "100".into()),
        ("ORDERS_RATE_LIMIT".into(), "1000000/minute".into()),
        ("RUST_LOG".into(), "info,sqlx=warn,access=warn".into()),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let mut env_a = common.clone();
    env_a.push(("WORKER_CONCURRENCY".into(), "1".into()));
    // A migrates the orders database before any worker starts.
    let app = start_role("all", &tmp.path().join("a"), &as_refs(&env_a), 0).await;
    let mut env_w = common.clone();
    env_w.push(("WORKER_CONCURRENCY".into(), "4".into()));
    let worker_dirs: Vec<PathBuf> = (0..WORKERS)
        .map(|i| tmp.path().join(format!("worker-{i}")))
        .collect();
    let mut generations = [0u32; WORKERS];
    let mut workers = Vec::new();
    for dir in &worker_dirs {
        workers.push(start_role("worker", dir, &as_refs(&env_w), 0).await);
    }

    let (_, token) = app.user("chaos@example.com").await;
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, token, next) = (
                app.http.clone(),
                format!("{}/orders/", app.orders_url),
                token.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < ORDERS {
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&one_item_order())
                        .send()
                        .await
                        .expect("create order");
                    let status = r.status();
                    assert_eq!(status, 200, "create order: {}", r.text().await.unwrap());
                }
            })
        })
        .collect();

    let pool = sqlx::PgPool::connect(&orders_db.url).await.unwrap();
    // The kills start once jobs are flowing, so they land on jobs in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while paid(&pool).await < 100 {
        assert!(
            Instant::now() < deadline,
            "no jobs are being paid; logs:\n{}",
            tail(&all_logs(&[&app, &workers[0]]), 80)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
        let victim = rng.below(WORKERS as u64) as usize;
        let paid_then = paid(&pool).await;
        workers[victim].kill();
        generations[victim] += 1;
        workers[victim] = start_role(
            "worker",
            &worker_dirs[victim],
            &as_refs(&env_w),
            generations[victim],
        )
        .await;
        kills.push((victim, paid_then));
    }
    println!("SIGKILLed and restarted (worker, orders PAID at that moment): {kills:?}");

    for client in clients {
        tokio::time::timeout(Duration::from_secs(120), client)
            .await
            .expect("5,000 orders created within 120 s")
            .expect("an order client failed");
    }
    let created = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = paid(&pool).await;
        if n == ORDERS as i64 {
            break;
        }
        if Instant::now() > deadline {
            let mut apps = vec![&app];
            apps.extend(workers.iter());
            panic!(
                "only {n} of {ORDERS} orders PAID; logs (tail):\n{}",
                tail(&all_logs(&apps), 200)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();

    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, ORDERS as i64, "orders created");
    let effects: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM order_status_history WHERE from_status = 'PENDING' AND to_status = 'PAID'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let twice: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_id::text, COUNT(*) FROM order_status_history WHERE to_status = 'PAID' \
         GROUP BY order_id HAVING COUNT(*) <> 1 LIMIT 10",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(twice.is_empty(), "orders paid more than once: {twice:?}");
    assert_eq!(effects, ORDERS as i64, "PENDING -> PAID changes");
    pool.close().await;

    let mut config = RedisQueueConfig::new(format!("{}/0", keys.base_url));
    config.prefix = keys.prefix.clone();
    let queue = RedisQueue::connect(config).await.expect("the run's queue");
    // The last acks may trail the last PAID commit by a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let s = queue.stats(QUEUE).await.unwrap();
        if (s.waiting, s.running, s.retrying) == (0, 0, 0) || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (stats.waiting, stats.running, stats.retrying, stats.dead),
        (0, 0, 0, 0),
        "queue after the run: {stats:?}"
    );
    let mut conn = redis::Client::open(format!("{}/0", keys.base_url))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stream = format!("{}:{QUEUE}:stream", keys.prefix);
    // XPENDING summary: [count, min id, max id, consumers].
    let pending: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
        .arg(&stream)
        .arg("workers")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(pending.0, 0, "unacked stream entries: {pending:?}");

    let mut apps = vec![&app];
    apps.extend(workers.iter());
    let logs = all_logs(&apps);
    let runs = logs.matches("Starting to process order").count();
    let per_process: Vec<usize> = apps
        .iter()
        .map(|a| a.logs().matches("Starting to process order").count())
        .collect();
    let reclaimed = runs.saturating_sub(ORDERS);
    println!(
        "{ORDERS} orders, {} kills, {runs} job runs ({reclaimed} beyond one per job), \
         {effects} PENDING -> PAID changes, created in {created:?}, all PAID after {elapsed:?}; \
         runs by process A's one slot and workers 0..3: {per_process:?}",
        kills.len()
    );
    drop(workers);
    drop(app);
}
