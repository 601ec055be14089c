//! Dead letters of the embedded broker's durable groups through the Bus port:
//! listed with reason and delivery count, replayed to their group alone,
//! purged, and kept across a restart.

use std::path::Path;
use std::time::Duration;

use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker};
use orderly_bus::{Bus, GroupOptions, Message, StreamConfig, Subscription};

const WAIT: Duration = Duration::from_secs(10);

async fn broker(dir: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(BrokerConfig {
        data_dir: Some(dir.to_path_buf()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

fn stream() -> StreamConfig {
    StreamConfig::new("events", &["orders.>"])
}

fn options() -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 2,
        max_in_flight: 8,
    }
}

async fn next(sub: &mut Subscription) -> orderly_bus::Delivery {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a delivery in time")
        .expect("subscription open")
}

/// Nacks every delivery of `payload` until the group gives up on it.
async fn exhaust(sub: &mut Subscription, deliveries: u32) {
    for attempt in 1..=deliveries {
        let d = next(sub).await;
        assert_eq!(d.attempt, attempt);
        d.nack(Duration::ZERO);
    }
}

async fn dead_count(bus: &EmbeddedBroker) -> usize {
    bus.dead_letters(&stream(), 100).await.unwrap().len()
}

#[tokio::test]
async fn a_dead_letter_is_listed_with_its_reason_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = broker(dir.path()).await;
        bus.ensure_stream(stream()).await.unwrap();
        let mut sub = bus
            .subscribe_group("orders.created", "billing", options())
            .await
            .unwrap();
        let msg = Message::new("orders.created", "{\"order_id\":\"o-1\"}")
            .with_key("o-1")
            .with_header("event-id", "e-1");
        bus.publish(msg.clone()).await.unwrap();
        exhaust(&mut sub, 2).await;
        let dead = bus.dead_letters(&stream(), 10).await.unwrap();
        assert_eq!(dead.len(), 1, "{dead:?}");
        let d = &dead[0];
        assert_eq!(d.group, "billing");
        assert_eq!(d.message, msg);
        assert_eq!(d.reason, "max deliveries reached");
        assert_eq!(d.deliveries, 2);
        assert!(d.dead_at.is_some());
        assert!(
            d.id.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        );
        bus.close().await;
    }
    let bus = broker(dir.path()).await;
    let dead = bus.dead_letters(&stream(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "max deliveries reached");
    assert_eq!(dead[0].message.key.as_deref(), Some("o-1"));
    // Nothing is listed for a stream the broker does not have.
    let other = StreamConfig::new("elsewhere", &["x.>"]);
    assert!(bus.dead_letters(&other, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn replay_gives_the_message_back_to_its_group_alone_with_a_fresh_count() {
    let dir = tempfile::tempdir().unwrap();
    let bus = broker(dir.path()).await;
    bus.ensure_stream(stream()).await.unwrap();
    let mut billing = bus
        .subscribe_group("orders.created", "billing", options())
        .await
        .unwrap();
    let mut audit = bus
        .subscribe_group("orders.created", "audit", options())
        .await
        .unwrap();
    let msg = Message::new("orders.created", "p").with_header("Nats-Msg-Id", "dedup-1");
    bus.publish(msg.clone()).await.unwrap();
    next(&mut audit).await.ack();
    exhaust(&mut billing, 2).await;
    let dead = bus.dead_letters(&stream(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);

    assert!(bus.replay_dead(&stream(), &dead[0].id).await.unwrap());
    let again = next(&mut billing).await;
    assert_eq!(again.message, msg, "the same message, dedup id and all");
    assert_eq!(again.attempt, 1, "a fresh delivery count");
    again.ack();
    assert_eq!(dead_count(&bus).await, 0);
    assert!(
        !bus.replay_dead(&stream(), &dead[0].id).await.unwrap(),
        "replayed already"
    );
    // The group that had handled it does not see it again.
    bus.publish(Message::new("orders.created", "marker"))
        .await
        .unwrap();
    assert_eq!(next(&mut audit).await.message.payload, "marker");
}

#[tokio::test]
async fn purge_removes_one_dead_letter_and_leaves_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let bus = broker(dir.path()).await;
    bus.ensure_stream(stream()).await.unwrap();
    let mut sub = bus
        .subscribe_group("orders.created", "billing", options())
        .await
        .unwrap();
    for p in ["a", "b"] {
        bus.publish(Message::new("orders.created", p))
            .await
            .unwrap();
        exhaust(&mut sub, 2).await;
    }
    let dead = bus.dead_letters(&stream(), 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].message.payload, "a", "oldest first");
    assert_eq!(bus.dead_letters(&stream(), 1).await.unwrap().len(), 1);
    assert!(bus.purge_dead(&stream(), &dead[0].id).await.unwrap());
    assert!(!bus.purge_dead(&stream(), &dead[0].id).await.unwrap());
    assert!(!bus.purge_dead(&stream(), "not-an-id").await.unwrap());
    let left = bus.dead_letters(&stream(), 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].message.payload, "b");
}
