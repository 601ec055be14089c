//! `BUS=kafka` against tansu at `ORDERLY_TEST_KAFKA` (started by
//! `scripts/with-tansu`): the old E2E script, the `new_order` record as a plain
//! Kafka consumer reads it, and a Kafka that is down when orderly starts. Each
//! test has its own topic prefix. Without the broker the tests fail when
//! CI=true and are skipped with a reason otherwise.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};
use serde_json::Value;

use crate::e2e::run_old_script;
use crate::helpers::{one_item_order, spawn_app_with};

pub(crate) fn kafka() -> Option<String> {
    match std::env::var("ORDERLY_TEST_KAFKA") {
        Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
        _ => orderly_testkit::missing(
            "Kafka (ORDERLY_TEST_KAFKA)",
            "not set; run the tests through scripts/with-tansu",
        ),
    }
}

pub(crate) fn prefix() -> String {
    format!("t{}-", uuid::Uuid::new_v4().simple())
}

/// A plain rdkafka consumer, not orderly's adapter, from the topic's start.
fn plain_consumer(bootstrap: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("plain-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("plain consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

#[tokio::test(flavor = "multi_thread")]
async fn the_old_readme_script_prints_paid_with_bus_kafka_and_new_order_is_the_contract_json() {
    let Some(bootstrap) = kafka() else { return };
    let prefix = prefix();
    let app = spawn_app_with(&[
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("WORKER_PAYMENT_DELAY_MS", "2000"),
        ("ORDERS_RATE_LIMIT", "10/minute"),
    ])
    .await;
    let (auth, orders) = (app.auth_url.clone(), app.orders_url.clone());
    let output = tokio::task::spawn_blocking(move || run_old_script(&auth, &orders))
        .await
        .unwrap();
    assert!(
        output.contains(r#""status":"PAID"#),
        "script output:\n{output}\nlogs:\n{}",
        app.logs()
    );
    let order_id = output
        .lines()
        .find_map(|l| l.strip_prefix("Order ID: "))
        .expect("the script prints the order id")
        .trim()
        .to_string();

    let consumer = plain_consumer(&bootstrap, &format!("{prefix}new_order"));
    let record = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a new_order record within 30 s")
        .expect("consume new_order");
    let value = std::str::from_utf8(record.payload().expect("a value")).expect("UTF-8 JSON");
    let json: Value = serde_json::from_str(value).expect("JSON value");
    let keys: BTreeSet<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["order_id", "user_id", "timestamp"]),
        "{value}"
    );
    assert_eq!(json["order_id"], order_id.as_str(), "{value}");
    assert_eq!(json["user_id"], 1, "{value}");
    let ts = json["timestamp"].as_str().expect("timestamp string");
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {ts:?} is not RFC 3339: {e}"));
    assert_eq!(record.key(), Some(order_id.as_bytes()), "key = order id");
    let headers = record.headers().expect("headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(header("event-type").as_deref(), Some("new_order"));
    assert!(header("event-id").is_some_and(|id| !id.is_empty()));
}

/// Forwards 127.0.0.1:`port` to `target` once started: "Kafka comes up".
/// Clients bootstrap through it, then follow the broker's advertised address.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn orders_accepts_orders_while_kafka_is_down_and_they_are_paid_once_it_is_up() {
    let Some(bootstrap) = kafka() else { return };
    // A port nobody listens on until "Kafka comes up" below.
    let port = orderly_testkit::free_port();
    let down = format!("127.0.0.1:{port}");
    let prefix = prefix();
    let app = spawn_app_with(&[
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", down.as_str()),
        ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ])
    .await;

    let ready = app
        .http
        .get(format!("{}/ready", app.orders_url))
        .send()
        .await
        .expect("ready");
    // The outbox keeps the events: a bus outage is no reason to take orders
    // out of the load balancer. /ready says so without failing.
    assert_eq!(ready.status(), 200, "/ready while Kafka is down");
    let body: Value = ready.json().await.expect("/ready JSON");
    let bus = body["checks"]["bus"].as_str().unwrap_or_default();
    assert!(
        bus.starts_with("degraded: "),
        "/ready names the bus: {body}"
    );
    assert_eq!(body["checks"]["database"], "ok", "{body}");

    let (_, token) = app.user("down@example.com").await;
    let created = app.create_order(&token, one_item_order()).await;
    assert!(
        created.status().is_success(),
        "orders accepts POSTs with Kafka down: {}",
        created.status()
    );
    let order: Value = created.json().await.expect("order JSON");
    let id = order["id"].as_str().expect("order id").to_string();

    let listener = tokio::net::TcpListener::bind(&down)
        .await
        .expect("the reserved port is free again");
    let proxy = tokio::spawn(forward(listener, bootstrap.clone()));
    let t0 = Instant::now();
    app.wait_for_status(&token, &id, "PAID", Duration::from_secs(90))
        .await;
    println!("order paid {:?} after Kafka came up", t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = app
            .http
            .get(format!("{}/ready", app.orders_url))
            .send()
            .await
            .expect("ready");
        let body: Value = r.json().await.expect("/ready JSON");
        if body["checks"]["bus"] == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "the bus never showed ok: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    proxy.abort();
}
