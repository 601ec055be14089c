//! Dead letters on the real nats-server (`ORDERLY_TEST_NATS_URL`, default
//! nats://127.0.0.1:4222): JetStream's advisories, kept in the stream's
//! companion stream, listed with reason and delivery count, replayed, purged.
//! Each test works on its own streams and deletes them at the end.

use std::time::{Duration, Instant};

use orderly_bus::{Bus, GroupOptions, Message, StreamConfig, Subscription, header};
use orderly_nats::{NatsBus, NatsConfig};

const WAIT: Duration = Duration::from_secs(10);

fn url() -> String {
    std::env::var("ORDERLY_TEST_NATS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| orderly_nats::DEFAULT_URL.to_string())
}

async fn next(sub: &mut Subscription, what: &str) -> orderly_bus::Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("subscription ended while waiting for {what}"),
        Err(_) => panic!("nothing within {WAIT:?} while waiting for {what}"),
    }
}

async fn wait_for_dead(
    bus: &NatsBus,
    stream: &StreamConfig,
    n: usize,
) -> Vec<orderly_bus::DeadLetter> {
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = bus.dead_letters(stream, 10).await.expect("list");
        if dead.len() >= n {
            return dead;
        }
        assert!(Instant::now() < deadline, "dead letters: {dead:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn delete_streams(bus: &NatsBus, stream: &StreamConfig) {
    let js = async_nats::jetstream::new(bus.client().clone());
    for name in [
        stream.name.clone(),
        orderly_nats::dead_letter_stream(&stream.name),
    ] {
        let _ = js.delete_stream(&name).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged() {
    let bus = NatsBus::connect(NatsConfig::new(url()))
        .await
        .expect("nats-server with JetStream (nats-server -js)");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let stream = StreamConfig::new(format!("dl_{id}"), &[format!("dl.{id}.>").as_str()]);
    let subject = format!("dl.{id}.orders");
    bus.ensure_stream(stream.clone()).await.expect("stream");
    let options = GroupOptions {
        ack_wait: Duration::from_millis(500),
        max_deliveries: 2,
        max_in_flight: 8,
    };
    let mut sub = bus
        .subscribe_group(&subject, "billing", options)
        .await
        .expect("group");

    // Nacked at its last delivery: terminated.
    bus.publish(
        Message::new(&subject, "{\"order_id\":\"o-1\"}")
            .with_key("o-1")
            .with_header(header::EVENT_ID, "e-1")
            .with_header("Nats-Msg-Id", format!("{id}-1")),
    )
    .await
    .expect("publish");
    for attempt in 1..=2 {
        let d = next(&mut sub, "the nacked message").await;
        assert_eq!(d.attempt, attempt);
        d.nack(Duration::ZERO);
    }
    // Never settled: the ack wait runs out at the last delivery.
    bus.publish(Message::new(&subject, "silent"))
        .await
        .expect("publish");
    let mut held = Vec::new();
    for _ in 1..=2 {
        held.push(next(&mut sub, "the silent message").await);
    }
    let dead = wait_for_dead(&bus, &stream, 2).await;
    let nacked = dead
        .iter()
        .find(|d| d.message.key.as_deref() == Some("o-1"))
        .expect("the nacked message is dead");
    assert_eq!(nacked.group, "billing");
    assert_eq!(nacked.message.subject, subject);
    assert_eq!(nacked.message.header(header::EVENT_ID), Some("e-1"));
    assert_eq!(nacked.deliveries, 2);
    assert_eq!(nacked.reason, "max deliveries reached");
    assert!(nacked.dead_at.is_some());
    let silent = dead
        .iter()
        .find(|d| d.message.payload == "silent")
        .expect("the silent message is dead");
    assert!(silent.reason.contains("ack wait"), "{}", silent.reason);
    drop(held);

    // Replay: back to the group (its dedup id does not stop it), off the list.
    assert!(bus.replay_dead(&stream, &nacked.id).await.expect("replay"));
    let back = next(&mut sub, "the replayed message").await;
    assert_eq!(back.message.key.as_deref(), Some("o-1"));
    assert_eq!(back.attempt, 1);
    back.ack();
    assert!(!bus.replay_dead(&stream, &nacked.id).await.expect("replay"));

    // Purge: gone for good.
    assert!(bus.purge_dead(&stream, &silent.id).await.expect("purge"));
    assert!(!bus.purge_dead(&stream, &silent.id).await.expect("purge"));
    assert!(
        bus.dead_letters(&stream, 10)
            .await
            .expect("list")
            .is_empty()
    );
    delete_streams(&bus, &stream).await;
    bus.close().await;
}
