//! Operability: W3C trace context from the POST to the worker's log
//! lines, Prometheus metrics of HTTP, bus, queue, cache and outbox, `/ready`
//! naming every dependency, and the ops endpoint of the consumer and worker
//! roles (`ORDERLY_OPS_BIND`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::{RedisKeys, all_logs, start_orderly_broker};
use crate::helpers::{TestApp, one_item_order, spawn_app, spawn_app_with, start_role};

/// A random, valid `traceparent` and its trace id.
fn client_traceparent() -> (String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let span_id = &uuid::Uuid::new_v4().simple().to_string()[..16];
    (format!("00-{trace_id}-{span_id}-01"), trace_id)
}

/// `00-<32 hex>-<16 hex>-<2 hex>` split into (trace id, span id); panics otherwise.
fn parts(traceparent: &str) -> (String, String) {
    let fields: Vec<&str> = traceparent.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        fields.len() == 4
            && fields[0] == "00"
            && hex(fields[1], 32)
            && hex(fields[2], 16)
            && hex(fields[3], 2)
            && fields[1] != "0".repeat(32)
            && fields[2] != "0".repeat(16),
        "not a valid traceparent: {traceparent:?}"
    );
    (fields[1].to_string(), fields[2].to_string())
}

/// POST an order (with `traceparent` when given); returns its id and the
/// `traceparent` the response carries.
async fn create_traced(app: &TestApp, token: &str, traceparent: Option<&str>) -> (String, String) {
    let mut request = app
        .http
        .post(format!("{}/orders/", app.orders_url))
        .bearer_auth(token)
        .json(&one_item_order());
    if let Some(tp) = traceparent {
        request = request.header("traceparent", tp);
    }
    let response = request.send().await.expect("create order");
    assert_eq!(response.status(), 200);
    let answered = response
        .headers()
        .get("traceparent")
        .expect("the response names its trace")
        .to_str()
        .unwrap()
        .to_string();
    let order: Value = response.json().await.unwrap();
    (order["id"].as_str().unwrap().to_string(), answered)
}

/// Wait (bounded) until a line of `logs()` has every one of `needles`; returns it.
async fn log_line_with(logs: impl Fn() -> String, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = logs();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line has all of {needles:?}; logs:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(app: &TestApp, url: String) -> reqwest::Response {
    app.http.get(url).send().await.expect("GET")
}

/// Sum of the samples of `name` whose labels include every `labels` pair.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// A metric, labels its series must have, and the least value their sum may have.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Poll `url` (a `/metrics`) until every expectation holds; returns the text.
async fn metrics_until(app: &TestApp, url: &str, expect: &[Expected<'_>]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = get(app, url.to_string()).await.text().await.unwrap();
        let missing: Vec<String> = expect
            .iter()
            .filter(|(name, labels, at_least)| {
                metric(&text, name, labels).is_none_or(|v| v < *at_least)
            })
            .map(|(name, labels, at_least)| format!("{name}{labels:?} >= {at_least}"))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never showed {missing:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `/ready`: (status, body).
async fn ready(app: &TestApp, base: &str) -> (u16, Value) {
    let r = get(app, format!("{base}/ready")).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn check_names(body: &Value) -> Vec<String> {
    let mut names: Vec<String> = body["checks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_log_line_for_an_order_carries_the_trace_id_of_the_post_that_created_it() {
    let app = spawn_app().await;
    let (_, token) = app.user("traced@example.com").await;

    // The client's trace goes on: same trace id, a span id of the service's own.
    let (sent, sent_trace_id) = client_traceparent();
    let (order_id, answered) = create_traced(&app, &token, Some(&sent)).await;
    let (answered_trace_id, answered_span_id) = parts(&answered);
    assert_eq!(answered_trace_id, sent_trace_id);
    assert_ne!(answered_span_id, parts(&sent).1);

    // No traceparent: the service starts a trace; invalid ones are replaced.
    let (untraced_id, started) = create_traced(&app, &token, None).await;
    let (started_trace_id, _) = parts(&started);
    let zeros = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let (replaced_id, replaced) = create_traced(&app, &token, Some(zeros)).await;
    let (replaced_trace_id, _) = parts(&replaced);
    assert_ne!(replaced_trace_id, "0".repeat(32));
    assert_ne!(
        started_trace_id, replaced_trace_id,
        "each new trace is its own"
    );

    for (id, trace_id) in [
        (&order_id, &sent_trace_id),
        (&untraced_id, &started_trace_id),
        (&replaced_id, &replaced_trace_id),
    ] {
        app.wait_for_status(&token, id, "PAID", Duration::from_secs(30))
            .await;
        // The worker's lines, not only the request's: the job's span carries it.
        let paid = format!("Order {id} successfully updated to PAID status");
        log_line_with(|| app.logs(), &[&paid, trace_id]).await;
        let started = format!("Starting to process order {id}");
        log_line_with(|| app.logs(), &[&started, trace_id]).await;
        // The HTTP request's log span has it too.
        log_line_with(|| app.logs(), &["finished processing request", trace_id]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_one_paid_order_metrics_show_http_bus_queue_cache_and_outbox() {
    let app = spawn_app().await;
    let (_, token) = app.user("metrics@example.com").await;
    let order: Value = app
        .create_order(&token, one_item_order())
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    app.wait_for_status(&token, id, "PAID", Duration::from_secs(30))
        .await;

    let url = format!("{}/metrics", app.orders_url);
    let new_order: &[(&str, &str)] = &[("subject", "new_order")];
    let jobs: &[(&str, &str)] = &[("queue", "process_order")];
    let text = metrics_until(
        &app,
        &url,
        &[
            (
                "http_requests_total",
                &[
                    ("service", "orders"),
                    ("method", "POST"),
                    ("route", "/orders/"),
                    ("status", "200"),
                ],
                1.0,
            ),
            (
                "http_requests_total",
                &[("route", "/orders/{order_id}/"), ("status", "200")],
                1.0,
            ),
            ("bus_published_total", new_order, 1.0),
            (
                "bus_published_total",
                &[("subject", "order_status_changed")],
                1.0,
            ),
            ("bus_delivered_total", new_order, 1.0),
            ("bus_acked_total", new_order, 1.0),
            ("jobs_enqueued_total", jobs, 1.0),
            ("jobs_reserved_total", jobs, 1.0),
            ("jobs_completed_total", jobs, 1.0),
            (
                "job_queue_depth",
                &[("queue", "process_order"), ("state", "waiting")],
                0.0,
            ),
            (
                "job_queue_depth",
                &[("queue", "process_order"), ("state", "dead")],
                0.0,
            ),
            ("order_cache_requests_total", &[], 1.0),
            ("outbox_published_total", &[], 2.0),
            ("outbox_unsent", &[], 0.0),
            ("outbox_oldest_unsent_seconds", &[], 0.0),
        ],
    )
    .await;
    // Nothing was redelivered, retried or dead in this run.
    assert_eq!(
        metric(&text, "bus_redelivered_total", new_order),
        None,
        "{text}"
    );
    assert_eq!(metric(&text, "jobs_dead_total", jobs), None, "{text}");
    // Label values stay bounded: no order id in any series.
    assert!(!text.contains(id), "an order id in the metrics:\n{text}");

    // `orderly all`'s orders /ready names everything the process depends on.
    let (status, body) = ready(&app, &app.orders_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(check_names(&body), ["bus", "database", "job_queue"]);
    assert!(
        body["checks"]
            .as_object()
            .unwrap()
            .values()
            .all(|v| v == "ok"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_and_a_consumer_alone_serve_health_ready_and_metrics_on_the_ops_address() {
    // Each on its own data directory: the embedded bus and queue, nothing else.
    let tmp = tempfile::tempdir().unwrap();
    let ops = [("ORDERLY_OPS_BIND", "127.0.0.1:0")];
    let worker = start_role("worker", &tmp.path().join("worker"), &ops, 0).await;
    let consumer = start_role("consumer", &tmp.path().join("consumer"), &ops, 0).await;

    for (app, expected) in [
        (&worker, vec!["database", "job_queue"]),
        (&consumer, vec!["bus", "job_queue"]),
    ] {
        assert!(!app.ops_url.is_empty(), "the role announces its ops URL");
        let health = get(app, format!("{}/health", app.ops_url)).await;
        assert_eq!(health.status(), 200);
        assert_eq!(health.text().await.unwrap(), r#"{"status":"ok"}"#);
        let (status, body) = ready(app, &app.ops_url).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(check_names(&body), expected, "{body}");
        let missing = get(app, format!("{}/orders/", app.ops_url)).await;
        assert_eq!(missing.status(), 404);
        assert_eq!(missing.text().await.unwrap(), r#"{"detail":"Not Found"}"#);
    }
    // The worker's process samples its queue's depth from the start.
    metrics_until(
        &worker,
        &format!("{}/metrics", worker.ops_url),
        &[(
            "job_queue_depth",
            &[("queue", "process_order"), ("state", "waiting")],
            0.0,
        )],
    )
    .await;
    let consumer_metrics = get(&consumer, format!("{}/metrics", consumer.ops_url)).await;
    assert_eq!(consumer_metrics.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_carry_the_trace_to_the_worker_and_each_shows_its_own_metrics() {
    if orderly_testkit::shared_redis().await.is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_broker, nats_url) = start_orderly_broker(&tmp.path().join("broker"), "127.0.0.1:0");
    let db = format!("sqlite://{}", tmp.path().join("orders.db").display());
    // Deleted on drop, after the processes (declared later, dropped first).
    let keys = RedisKeys::new();
    let (prefix, redis) = (keys.prefix.clone(), keys.queue_url());
    let common: Vec<(&str, &str)> = vec![
        ("BUS", "nats"),
        ("NATS_URL", nats_url.as_str()),
        ("JOB_QUEUE", "redis"),
        ("REDIS_URL", redis.as_str()),
        ("JOB_QUEUE_PREFIX", prefix.as_str()),
        ("ORDERS_DATABASE_URL", db.as_str()),
        ("ORDERS_RATE_LIMIT_KEY_PREFIX", prefix.as_str()),
        ("ORDERLY_OPS_BIND", "127.0.0.1:0"),
    ];
    let auth = start_role("auth", &tmp.path().join("auth"), &common, 0).await;
    let jwks = format!("{}/.well-known/jwks.json", auth.auth_url);
    let mut orders_env = common.clone();
    orders_env.push(("ORDERS_JWKS_URL", jwks.as_str()));
    orders_env.push(("ORDERS_PUBLIC_KEY_PATH", "/nonexistent/public.pem"));
    let orders = start_role("orders", &tmp.path().join("orders"), &orders_env, 0).await;
    let consumer = start_role("consumer", &tmp.path().join("consumer"), &common, 0).await;
    let worker = start_role("worker", &tmp.path().join("worker"), &common, 0).await;
    let everyone = || all_logs(&[&auth, &orders, &consumer, &worker]);

    // The orders process reaches auth through the JWKS, hence the token below.
    let (_, token) = auth.user("processes@example.com").await;
    let (sent, trace_id) = client_traceparent();
    let (order_id, _) = create_traced(&orders, &token, Some(&sent)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = orders
            .get_order(&token, &order_id)
            .await
            .json()
            .await
            .unwrap();
        if body["status"] == "PAID" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order never PAID: {body}\n{}",
            everyone()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // In the production shape the worker's own process logs it.
    let paid = format!("Order {order_id} successfully updated to PAID status");
    log_line_with(|| worker.logs(), &[&paid, &trace_id]).await;

    let (status, body) = ready(&orders, &orders.orders_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        check_names(&body),
        ["bus", "cache", "database", "jwks", "rate_limiter"],
        "{body}"
    );
    let (status, body) = ready(&worker, &worker.ops_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        check_names(&body),
        ["cache", "database", "job_queue"],
        "{body}"
    );
    let (status, body) = ready(&consumer, &consumer.ops_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(check_names(&body), ["bus", "job_queue"], "{body}");

    let jobs: &[(&str, &str)] = &[("queue", "process_order")];
    metrics_until(
        &worker,
        &format!("{}/metrics", worker.ops_url),
        &[
            ("jobs_completed_total", jobs, 1.0),
            (
                "job_queue_depth",
                &[("queue", "process_order"), ("state", "running")],
                0.0,
            ),
        ],
    )
    .await;
    metrics_until(
        &consumer,
        &format!("{}/metrics", consumer.ops_url),
        &[
            ("bus_delivered_total", &[("subject", "new_order")], 1.0),
            ("bus_acked_total", &[("subject", "new_order")], 1.0),
            ("jobs_enqueued_total", jobs, 1.0),
        ],
    )
    .await;
    metrics_until(
        &orders,
        &format!("{}/metrics", orders.orders_url),
        &[("bus_published_total", &[("subject", "new_order")], 1.0)],
    )
    .await;
    drop((auth, orders, consumer, worker));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fail_open_limiter_on_an_unreachable_redis_leaves_ready_at_200_as_degraded() {
    // A port nothing listens on: bind, note it, release it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let limiter = format!("redis://{closed}/2");
    let open = spawn_app_with(&[("ORDERS_REDIS_LIMITER_URL", limiter.as_str())]).await;
    let (status, body) = ready(&open, &open.orders_url).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let note = body["checks"]["rate_limiter"].as_str().unwrap_or_default();
    assert!(note.starts_with("degraded: "), "{body}");
    assert_eq!(body["checks"]["database"], "ok", "{body}");
    // And requests do go through, uncounted.
    let (_, token) = open.user("open@example.com").await;
    assert_eq!(
        open.create_order(&token, one_item_order()).await.status(),
        200
    );

    let closed_limiter = spawn_app_with(&[
        ("ORDERS_REDIS_LIMITER_URL", limiter.as_str()),
        ("ORDERS_RATE_LIMIT_FAIL_CLOSED", "true"),
    ])
    .await;
    let (status, body) = ready(&closed_limiter, &closed_limiter.orders_url).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("rate_limiter"),
        "{body}"
    );
    assert!(
        !body["checks"]["rate_limiter"]
            .as_str()
            .unwrap()
            .starts_with("degraded"),
        "{body}"
    );
}
