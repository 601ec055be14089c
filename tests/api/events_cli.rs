//! `orderly events dead | replay | purge` on each transport: a consumer group
//! gives up on a `new_order` event, the command lists it with its reason,
//! delivery count and order, replays it to the group, and purges the rest.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::schema::events::{self, NEW_ORDER};
use orderly_bus::{Bus, GroupOptions, Message, Subscription, header};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const GROUP: &str = "dead-letter-test";

fn once() -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 1,
        max_in_flight: 8,
    }
}

/// `orderly events <args>` with `env`; (success, stdout, stderr).
fn events_cli(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("events")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ORDERLY_DATA_DIR", data_dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run orderly events");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event(order: &str) -> Message {
    Message::new(
        NEW_ORDER,
        format!("{{\"order_id\":\"{order}\",\"user_id\":1}}"),
    )
    .with_header(header::EVENT_ID, format!("event-{order}"))
}

async fn next(sub: &mut Subscription, what: &str) -> orderly_bus::Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("subscription ended while waiting for {what}"),
        Err(_) => panic!("nothing within {WAIT:?} while waiting for {what}"),
    }
}

/// Publishes `order`'s event and gives up on it in the group.
async fn kill(bus: &dyn Bus, sub: &mut Subscription, order: &str) {
    bus.publish(event(order)).await.expect("publish");
    let d = next(sub, "the event to give up on").await;
    assert!(d.message.payload.starts_with(b"{\"order_id\""));
    assert!(d.nack(Duration::ZERO));
}

async fn wait_for_dead(bus: &dyn Bus, n: usize) {
    let deadline = Instant::now() + WAIT;
    while bus
        .dead_letters(&events::stream(), 10)
        .await
        .expect("list")
        .len()
        < n
    {
        assert!(Instant::now() < deadline, "{n} dead letters expected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The listing as JSON: one dead letter, of order `order`.
fn listed_one(dir: &Path, env: &[(&str, &str)], order: &str) -> String {
    let (ok, out, err) = events_cli(dir, env, &["dead", "--json"]);
    assert!(ok, "events dead failed: {err}");
    let rows: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{out}");
    let row = &rows[0];
    assert_eq!(row["group"], GROUP, "{out}");
    assert_eq!(row["subject"], NEW_ORDER, "{out}");
    assert_eq!(row["order_id"], order, "{out}");
    assert_eq!(row["event_id"], format!("event-{order}"), "{out}");
    assert_eq!(row["deliveries"], 1, "{out}");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max deliveries")),
        "{out}"
    );
    assert!(row["dead_at"].is_string(), "{out}");
    row["id"].as_str().expect("an id").to_string()
}

/// The commands against a bus that the test keeps a member of `GROUP` on.
async fn dead_replay_purge(bus: Arc<dyn Bus>, env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    bus.ensure_stream(events::stream()).await.expect("stream");
    let mut sub = bus
        .subscribe_group(NEW_ORDER, GROUP, once())
        .await
        .expect("group");
    kill(bus.as_ref(), &mut sub, "order-1").await;
    wait_for_dead(bus.as_ref(), 1).await;

    let (ok, text, _) = events_cli(dir.path(), env, &["dead"]);
    assert!(
        ok && text.contains("order-1") && text.contains("max deliveries"),
        "{text}"
    );
    let id = listed_one(dir.path(), env, "order-1");

    let (ok, _, err) = events_cli(dir.path(), env, &["replay", "--all"]);
    assert!(!ok && err.contains("--yes"), "--all without --yes: {err}");
    let (ok, out, err) = events_cli(dir.path(), env, &["replay", &id]);
    assert!(ok, "replay failed: {err}");
    assert!(out.contains(&id), "{out}");
    let back = next(&mut sub, "the replayed event").await;
    assert_eq!(back.attempt, 1);
    assert_eq!(back.message.header(header::EVENT_ID), Some("event-order-1"));
    assert!(back.ack());
    let (ok, _, err) = events_cli(dir.path(), env, &["replay", &id]);
    assert!(
        !ok && err.contains("no dead letter"),
        "replayed twice: {err}"
    );

    kill(bus.as_ref(), &mut sub, "order-2").await;
    wait_for_dead(bus.as_ref(), 1).await;
    let (ok, out, err) = events_cli(dir.path(), env, &["purge", "--all", "--yes"]);
    assert!(ok, "purge failed: {err}");
    assert!(out.contains("purged 1"), "{out}");
    let (ok, out, _) = events_cli(dir.path(), env, &["dead"]);
    assert!(ok && out.contains("no dead letters"), "{out}");
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_dead_replay_and_purge_work_on_the_embedded_broker() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..BrokerConfig::default()
        })
    };
    // The command needs the data directory to itself: the broker is closed
    // around each run, and the group's member comes back after.
    let broker = open().await.expect("broker");
    broker
        .ensure_stream(events::stream())
        .await
        .expect("stream");
    let mut sub = broker
        .subscribe_group(NEW_ORDER, GROUP, once())
        .await
        .expect("group");
    kill(&broker, &mut sub, "order-1").await;
    drop(sub);
    broker.close().await;

    let env = [("BUS", "embedded")];
    let id = listed_one(dir.path(), &env, "order-1");
    let (ok, _, err) = events_cli(dir.path(), &env, &["purge", "--all"]);
    assert!(!ok && err.contains("--yes"), "--all without --yes: {err}");
    let (ok, _, err) = events_cli(dir.path(), &env, &["replay", &id]);
    assert!(ok, "replay failed: {err}");

    let broker = open().await.expect("broker again");
    let mut sub = broker
        .subscribe_group(NEW_ORDER, GROUP, once())
        .await
        .expect("group");
    let back = next(&mut sub, "the replayed event").await;
    assert_eq!(back.attempt, 1);
    assert_eq!(back.message.header(header::EVENT_ID), Some("event-order-1"));
    assert!(back.ack());
    kill(&broker, &mut sub, "order-2").await;
    drop(sub);
    broker.close().await;

    let (ok, out, err) = events_cli(dir.path(), &env, &["purge", "--all", "--yes"]);
    assert!(ok, "purge failed: {err}");
    assert!(out.contains("purged 1"), "{out}");
    let (ok, out, _) = events_cli(dir.path(), &env, &["dead"]);
    assert!(ok && out.contains("no dead letters"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn events_dead_replay_and_purge_work_on_nats() {
    let Some(nats) = crate::nats::NatsServer::start() else {
        return;
    };
    let bus = orderly_nats::NatsBus::connect(orderly_nats::NatsConfig::new(&nats.url))
        .await
        .expect("connect");
    let env = [("BUS", "nats"), ("NATS_URL", nats.url.as_str())];
    dead_replay_purge(Arc::new(bus), &env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_dead_replay_and_purge_work_on_kafka() {
    let Some(bootstrap) = crate::kafka::kafka() else {
        return;
    };
    let prefix = crate::kafka::prefix();
    let mut config = orderly_kafka::KafkaConfig::new(&bootstrap);
    config.topic_prefix = prefix.clone();
    let bus = orderly_kafka::KafkaBus::new(config).expect("bus");
    let env = [
        ("BUS", "kafka"),
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
        ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
    ];
    dead_replay_purge(Arc::new(bus), &env).await;
}
