//! Graceful shutdown: SIGTERM under load. What is guaranteed, and what the
//! first test asserts: every request the server had read is answered, none
//! with a 5xx. A request can get no answer only if the server never read it:
//! it was written onto an idle keep-alive connection at the instant the server
//! closed it (HTTP/1.1's own race; clients retry such requests) or it found the
//! listener closed. It then fails with a connection error and the server did
//! nothing with it: no order exists for it and no log line names its trace id.
//! The process exits 0 within a bound and says so, and what the relay and the
//! workers had not done yet is done after a restart or by another worker: every
//! order ends PAID with one PENDING -> PAID change.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::{RedisKeys, as_refs, tail};
use crate::helpers::{one_item_order, spawn_app_with, start, start_role};

/// SIGTERM to exit: the HTTP drain (20 s at most) plus a margin.
const EXIT_BOUND: Duration = Duration::from_secs(30);
const CLIENTS: usize = 16;

/// One request as the client saw it.
struct Sent {
    started: Instant,
    what: &'static str,
    /// Sent in its `traceparent`: the server's log lines about it carry it.
    trace_id: String,
    /// The status, or why there was none.
    outcome: Result<u16, NoAnswer>,
}

/// Why a request got no answer.
#[derive(Debug, Clone)]
enum NoAnswer {
    /// No connection could be made: the listener had closed.
    NotConnected(String),
    /// The connection closed (or was reset) before any byte of an answer.
    ConnectionClosed(String),
    /// Anything else (an answer cut short, a timeout …): never expected.
    Other(String),
}

impl NoAnswer {
    fn of(e: &reqwest::Error) -> Self {
        let chain = error_chain(e);
        if e.is_connect() {
            return NoAnswer::NotConnected(chain);
        }
        if e.is_request() && (closed_io(e) || chain.contains(HYPER_CLOSED_BEFORE_ANSWER)) {
            return NoAnswer::ConnectionClosed(chain);
        }
        NoAnswer::Other(chain)
    }
}

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAnswer::NotConnected(e) => write!(f, "not connected: {e}"),
            NoAnswer::ConnectionClosed(e) => write!(f, "connection closed: {e}"),
            NoAnswer::Other(e) => write!(f, "{e}"),
        }
    }
}

impl Sent {
    /// The request and what became of it, for a failure's message.
    fn describe(&self) -> String {
        let outcome = match &self.outcome {
            Ok(status) => format!("status {status}"),
            Err(e) => e.to_string(),
        };
        format!("{} ({}): {outcome}", self.what, self.trace_id)
    }
}

/// hyper's words for a connection that closed before the answer began.
const HYPER_CLOSED_BEFORE_ANSWER: &str = "connection closed before message completed";

/// Whether an I/O error in `e`'s causes says the peer closed the connection.
fn closed_io(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The error and its causes ("error sending request" alone says little).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A new, valid `traceparent` and its trace id.
fn new_traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// The order id right after `marker` in a log line.
fn order_after(line: &str, marker: &str) -> Option<String> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.get(..36)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .map(str::to_string)
}

/// PENDING -> PAID changes per order in a SQLite orders database, for the ids given.
async fn pending_to_paid(db_url: &str, ids: &HashSet<String>) -> Vec<(String, i64)> {
    let pool = sqlx::SqlitePool::connect(db_url).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT order_id, COUNT(*) FROM order_status_history \
         WHERE from_status = 'PENDING' AND to_status = 'PAID' GROUP BY order_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    let mut counts: Vec<(String, i64)> = ids
        .iter()
        .map(|id| {
            let n = rows.iter().find(|(o, _)| o == id).map_or(0, |(_, n)| *n);
            (id.clone(), n)
        })
        .collect();
    counts.retain(|(_, n)| *n != 1);
    counts
}

/// The status and body of an answer; a body cut short is no answer.
async fn answer(r: reqwest::Response) -> Result<(u16, Vec<u8>), NoAnswer> {
    let status = r.status().as_u16();
    match r.bytes().await {
        Ok(body) => Ok((status, body.to_vec())),
        Err(e) => Err(NoAnswer::Other(format!(
            "status {status}, then the body failed: {}",
            error_chain(&e)
        ))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_answers_every_request_it_read_exits_0_and_loses_no_order() {
    let mut app = spawn_app_with(&[
        ("ORDERS_RATE_LIMIT", "1000000/minute"),
        // Slow enough that jobs are queued and running at the signal.
        ("WORKER_PAYMENT_DELAY_MS", "300"),
        // Every answered request has its access line, named by its trace id.
        ("RUST_LOG", "info"),
    ])
    .await;
    let mut tokens = Vec::new();
    for u in 0..4 {
        tokens.push(app.user(&format!("term-{u}@example.com")).await.1);
    }
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let created: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, url, token) = (
                reqwest::Client::new(),
                app.orders_url.clone(),
                tokens[c % tokens.len()].clone(),
            );
            let (sent, created, stop) = (sent.clone(), created.clone(), stop.clone());
            tokio::spawn(async move {
                let record = |started, what, trace_id, outcome| {
                    sent.lock().unwrap().push(Sent {
                        started,
                        what,
                        trace_id,
                        outcome,
                    })
                };
                let stopped = stop.notified();
                tokio::pin!(stopped);
                loop {
                    let t = Instant::now();
                    let (traceparent, trace_id) = new_traceparent();
                    let r = tokio::select! {
                        r = http.post(format!("{url}/orders/")).bearer_auth(&token)
                            .header("traceparent", traceparent).json(&one_item_order()).send() => r,
                        _ = &mut stopped => return,
                    };
                    let outcome = match r {
                        Ok(r) => answer(r).await,
                        Err(e) => Err(NoAnswer::of(&e)),
                    };
                    let id = outcome.as_ref().ok().and_then(|(_, body)| {
                        let body: Value = serde_json::from_slice(body).ok()?;
                        body["id"].as_str().map(str::to_string)
                    });
                    record(t, "create", trace_id, outcome.map(|(status, _)| status));
                    let Some(id) = id else {
                        // No order (the port is closed after the signal): this client is done.
                        return;
                    };
                    created.lock().unwrap().insert(id.clone());
                    let t = Instant::now();
                    let (traceparent, trace_id) = new_traceparent();
                    let r = http
                        .get(format!("{url}/orders/{id}/"))
                        .bearer_auth(&token)
                        .header("traceparent", traceparent)
                        .send()
                        .await;
                    let outcome = match r {
                        Ok(r) => answer(r).await.map(|(status, _)| status),
                        Err(e) => Err(NoAnswer::of(&e)),
                    };
                    let failed = outcome.is_err();
                    record(t, "get", trace_id, outcome);
                    if failed {
                        return;
                    }
                }
            })
        })
        .collect();

    // Mid-load: orders are being created, relayed, consumed and paid.
    let deadline = Instant::now() + Duration::from_secs(60);
    while created.lock().unwrap().len() < 150 {
        assert!(
            Instant::now() < deadline,
            "the load never got going; logs:\n{}",
            tail(&app.logs(), 40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signal_at = Instant::now();
    let status = tokio::task::block_in_place(|| app.terminate(EXIT_BOUND));
    let exited_after = signal_at.elapsed();
    stop.notify_waiters();
    for c in clients {
        c.await.unwrap();
    }
    let logs = app.logs();
    let status = status.unwrap_or_else(|| {
        panic!(
            "no exit within {EXIT_BOUND:?} of SIGTERM; logs:\n{}",
            tail(&logs, 60)
        )
    });
    assert!(
        status.success(),
        "exit status {status}; logs:\n{}",
        tail(&logs, 60)
    );
    assert!(logs.contains("SIGTERM received"), "{}", tail(&logs, 30));
    assert!(logs.contains("orderly stopped"), "{}", tail(&logs, 30));

    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let describe = |list: Vec<&Sent>| list.iter().map(|s| s.describe()).collect::<Vec<_>>();
    let server_errors = describe(
        sent.iter()
            .filter(|s| matches!(s.outcome, Ok(code) if code >= 500))
            .collect(),
    );
    assert!(
        server_errors.is_empty(),
        "5xx responses: {server_errors:#?}"
    );
    // The log names every request the server answered (its access line
    // carries the trace id), so a trace id missing from it is evidence.
    let answered_unlogged = describe(
        sent.iter()
            .filter(|s| s.outcome.is_ok() && !logs.contains(&s.trace_id))
            .collect(),
    );
    assert!(
        answered_unlogged.is_empty(),
        "answered requests without an access line: {answered_unlogged:#?}"
    );
    let unanswered: Vec<&Sent> = sent.iter().filter(|s| s.outcome.is_err()).collect();
    let not_a_closed_connection = describe(
        unanswered
            .iter()
            .copied()
            .filter(|s| matches!(s.outcome, Err(NoAnswer::Other(_))))
            .collect(),
    );
    assert!(
        not_a_closed_connection.is_empty(),
        "requests without an answer that did not meet a closed connection: {not_a_closed_connection:#?}"
    );
    // The server read none of them: no line of its log is about one.
    let read_by_the_server = describe(
        unanswered
            .iter()
            .copied()
            .filter(|s| logs.contains(&s.trace_id))
            .collect(),
    );
    assert!(
        read_by_the_server.is_empty(),
        "requests the server logged but did not answer: {read_by_the_server:#?}; logs:\n{}",
        tail(&logs, 40)
    );
    let met_the_close = unanswered.iter().filter(|s| s.started < signal_at).count();
    let answered_across = sent
        .iter()
        .filter(|s| s.started < signal_at && s.outcome.is_ok())
        .count();
    let refused_after = unanswered.iter().filter(|s| s.started >= signal_at).count();

    // What was left (events in the outbox, jobs queued or running) is done
    // after a restart on the same data.
    let created = std::mem::take(&mut *created.lock().unwrap());
    let db = format!("sqlite://{}", app.data_dir.join("orders.db").display());
    let paid_before: i64 = {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    let restarted = start(
        &app.data_dir,
        &[
            ("ORDERS_RATE_LIMIT", "1000000/minute"),
            ("WORKER_PAYMENT_DELAY_MS", "20"),
            ("WORKER_CONCURRENCY", "8"),
        ],
        1,
    )
    .await;
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let paid: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE status = 'PAID'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if paid == created.len() as i64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{paid} of {} orders PAID after the restart; logs:\n{}",
            created.len(),
            tail(&restarted.logs(), 60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    // No create the clients got no answer to made an order.
    assert_eq!(total, created.len() as i64, "orders in the database");
    let not_once = pending_to_paid(&db, &created).await;
    assert!(
        not_once.is_empty(),
        "orders without exactly one PENDING -> PAID: {not_once:?}"
    );
    println!(
        "shutdown[all]: {} requests, {answered_across} sent before SIGTERM answered, \
         {met_the_close} sent before it met a closing connection, {refused_after} unanswered after it, \
         exit 0 after {exited_after:?}; \
         {} orders, {paid_before} PAID at the stop, all PAID once after the restart",
        sent.len(),
        created.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_sigtermed_with_jobs_in_flight_exits_0_and_no_job_is_lost() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let keys = RedisKeys::new();
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("orders.db").display());
    let common: Vec<(String, String)> = vec![
        ("JOB_QUEUE".into(), "redis".into()),
        ("CELERY_BROKER_URL".into(), keys.queue_url()),
        ("JOB_QUEUE_PREFIX".into(), keys.prefix.clone()),
        ("ORDERS_DATABASE_URL".into(), db.clone()),
        ("ORDERS_RATE_LIMIT".into(), "1000000/minute".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "5".into()),
    ];
    // A: auth, orders, relay, consumer, and a worker held to one slow slot.
    let mut env_a = common.clone();
    env_a.push(("WORKER_CONCURRENCY".into(), "1".into()));
    env_a.push(("WORKER_PAYMENT_DELAY_MS".into(), "2000".into()));
    let app = start_role("all", &tmp.path().join("a"), &as_refs(&env_a), 0).await;
    let mut env_w = common.clone();
    env_w.push(("WORKER_CONCURRENCY".into(), "4".into()));
    env_w.push(("WORKER_PAYMENT_DELAY_MS".into(), "2000".into()));
    let mut worker = start_role("worker", &tmp.path().join("w1"), &as_refs(&env_w), 0).await;

    let (_, token) = app.user("worker-term@example.com").await;
    let mut ids = HashSet::new();
    for _ in 0..12 {
        let order: Value = app
            .create_order(&token, one_item_order())
            .await
            .json()
            .await
            .unwrap();
        ids.insert(order["id"].as_str().unwrap().to_string());
    }
    // SIGTERM once the worker has jobs in hand.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !worker.logs().contains("Starting to process order") {
        assert!(
            Instant::now() < deadline,
            "the worker never started a job; logs:\n{}\n{}",
            tail(&worker.logs(), 30),
            tail(&app.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signal_at = Instant::now();
    let status = tokio::task::block_in_place(|| worker.terminate(EXIT_BOUND));
    let exited_after = signal_at.elapsed();
    let logs = worker.logs();
    let status = status.unwrap_or_else(|| {
        panic!(
            "the worker did not exit within {EXIT_BOUND:?}; logs:\n{}",
            tail(&logs, 40)
        )
    });
    assert!(
        status.success(),
        "worker exit status {status}; logs:\n{}",
        tail(&logs, 40)
    );
    assert!(logs.contains("worker stopped"), "{}", tail(&logs, 30));
    let started_by_w1: HashSet<String> = logs
        .lines()
        .filter_map(|l| order_after(l, "Starting to process order "))
        .collect();
    let paid_by_w1: HashSet<String> = logs
        .lines()
        .filter(|l| l.contains("successfully updated to PAID"))
        .filter_map(|l| order_after(l, "Order "))
        .collect();
    let handed_back: HashSet<&String> = started_by_w1.difference(&paid_by_w1).collect();

    // Another worker takes what is left, including anything W1 gave back.
    let mut env_w2 = common.clone();
    env_w2.push(("WORKER_CONCURRENCY".into(), "4".into()));
    env_w2.push(("WORKER_PAYMENT_DELAY_MS".into(), "20".into()));
    let w2 = start_role("worker", &tmp.path().join("w2"), &as_refs(&env_w2), 0).await;
    for id in &ids {
        app.wait_for_status(&token, id, "PAID", Duration::from_secs(60))
            .await;
    }
    let not_once = pending_to_paid(&db, &ids).await;
    assert!(
        not_once.is_empty(),
        "orders without exactly one PENDING -> PAID: {not_once:?}"
    );
    let others = format!("{}\n{}", app.logs(), w2.logs());
    for id in &handed_back {
        assert!(
            others.contains(&format!("Order {id} successfully updated to PAID")),
            "order {id}, unfinished by the stopped worker, was not paid by another"
        );
    }
    println!(
        "shutdown[worker]: exit 0 after {exited_after:?}; it had started {} jobs, finished {}, \
         handed back {}; all {} orders PAID once",
        started_by_w1.len(),
        paid_by_w1.len(),
        handed_back.len(),
        ids.len()
    );
    drop((w2, app));
}

/// A stop waits for jobs in flight only up to `WORKER_STOP_GRACE`, then hands
/// them back. With payments far longer than the test and a visibility timeout
/// far longer than the test, the stopped worker exits soon after its grace and
/// another worker pays every order it had started, which only a hand-back
/// allows; each order ends with one PENDING -> PAID change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stopped_past_its_grace_hands_its_jobs_back_for_another_at_once() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    const ORDERS: usize = 8;
    let keys = RedisKeys::new();
    let tmp = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", tmp.path().join("orders.db").display());
    let common: Vec<(String, String)> = vec![
        ("JOB_QUEUE".into(), "redis".into()),
        ("CELERY_BROKER_URL".into(), keys.queue_url()),
        ("JOB_QUEUE_PREFIX".into(), keys.prefix.clone()),
        ("ORDERS_DATABASE_URL".into(), db.clone()),
        ("ORDERS_RATE_LIMIT".into(), "1000000/minute".into()),
        ("WORKER_VISIBILITY_TIMEOUT_SECONDS".into(), "600".into()),
        ("WORKER_PAYMENT_DELAY_MS".into(), "600000".into()),
    ];
    // A: the API, the relay and the consumer; its own worker holds one job
    // (at most: its payments outlast the test) and hands it back the moment A
    // stops. It takes that job before W1 starts: an A whose worker were still
    // free when W1 hands back would take one of W1's jobs and hold it for its
    // 600 s payment, so W2 could never pay it.
    let mut env_a = common.clone();
    env_a.push(("WORKER_CONCURRENCY".into(), "1".into()));
    env_a.push(("WORKER_STOP_GRACE".into(), "0".into()));
    let mut app = start_role("all", &tmp.path().join("a"), &as_refs(&env_a), 0).await;
    let (_, token) = app.user("worker-grace@example.com").await;
    let started = |logs: &str| -> HashSet<String> {
        logs.lines()
            .filter_map(|l| order_after(l, "Starting to process order "))
            .collect()
    };
    let mut ids = HashSet::new();
    let create = async || {
        let order: Value = app
            .create_order(&token, one_item_order())
            .await
            .json()
            .await
            .unwrap();
        order["id"].as_str().unwrap().to_string()
    };
    ids.insert(create().await);
    let deadline = Instant::now() + Duration::from_secs(60);
    while started(&app.logs()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "A's worker never took its job; logs:\n{}",
            tail(&app.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut env_w1 = common.clone();
    env_w1.push(("WORKER_STOP_GRACE".into(), "1".into()));
    let mut w1 = start_role("worker", &tmp.path().join("w1"), &as_refs(&env_w1), 0).await;
    for _ in 1..ORDERS {
        ids.insert(create().await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while started(&w1.logs()).len() < ORDERS - 1 {
        assert!(
            Instant::now() < deadline,
            "W1 never took the other jobs; logs:\n{}\n{}",
            tail(&w1.logs(), 30),
            tail(&app.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held_by_w1 = started(&w1.logs());
    assert!(!held_by_w1.is_empty(), "W1 took no job");

    let signal_at = Instant::now();
    let status = tokio::task::block_in_place(|| w1.terminate(EXIT_BOUND));
    let exited_after = signal_at.elapsed();
    let logs = w1.logs();
    let status = status.unwrap_or_else(|| {
        panic!(
            "W1 did not exit within {EXIT_BOUND:?} of SIGTERM (its payments take 600 s); logs:\n{}",
            tail(&logs, 40)
        )
    });
    assert!(
        status.success(),
        "W1 exit status {status}; logs:\n{}",
        tail(&logs, 40)
    );
    assert!(
        logs.contains(&format!(
            "handed {} unfinished jobs back to the queue",
            held_by_w1.len()
        )),
        "W1 did not hand back its {} jobs; logs:\n{}",
        held_by_w1.len(),
        tail(&logs, 30)
    );

    // W2 pays at once what W1 handed back (their reservations had 600 s to go).
    let mut env_w2 = common.clone();
    env_w2.retain(|(k, _)| k != "WORKER_PAYMENT_DELAY_MS");
    env_w2.push(("WORKER_PAYMENT_DELAY_MS".into(), "20".into()));
    let w2 = start_role("worker", &tmp.path().join("w2"), &as_refs(&env_w2), 0).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &held_by_w1 {
        loop {
            let order: Value = app.get_order(&token, id).await.json().await.unwrap();
            if order["status"] == "PAID" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "order {id}, handed back by W1, not PAID 60 s after W2 started: {order}\n\
                 W2 logs:\n{}\nA's jobs: {:?}",
                tail(&w2.logs(), 60),
                started(&app.logs())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A's own job goes back when A stops, and W2 pays it too.
    let stopped = tokio::task::block_in_place(|| app.terminate(EXIT_BOUND));
    assert!(
        stopped.is_some_and(|s| s.success()),
        "A did not stop cleanly"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let not_once = pending_to_paid(&db, &ids).await;
        if not_once.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orders without exactly one PENDING -> PAID: {not_once:?}; W2 logs:\n{}",
            tail(&w2.logs(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "worker stop grace: W1 held {} jobs, exited 0 after {exited_after:?} with a 1 s grace; \
         W2 paid them at once; all {ORDERS} orders PAID once",
        held_by_w1.len()
    );
    drop(w2);
}
