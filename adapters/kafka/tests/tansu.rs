//! The adapter against a real Kafka protocol broker (tansu, started by
//! `scripts/with-tansu`): offsets, redelivery, dead letters and rebalances.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use orderly_bus::{Bus, GroupOptions, Message, StreamConfig, header};
use orderly_kafka::KafkaBus;

use common::{bootstrap, config, next, text, unique};

const WAIT: Duration = Duration::from_secs(20);

macro_rules! kafka_or_skip {
    () => {
        match bootstrap() {
            Some(b) => b,
            None => return,
        }
    };
}

fn opts(max_in_flight: usize, max_deliveries: u32) -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries,
        max_in_flight,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_receives_key_headers_and_payload_and_the_topic_is_created() {
    let b = kafka_or_skip!();
    let mut c = config(&b);
    c.topic_prefix = format!("p{}-", uuid::Uuid::new_v4().simple());
    let prefix = c.topic_prefix.clone();
    let bus = KafkaBus::new(c).expect("bus");
    bus.check().await.expect("tansu is reachable");
    let topic = unique("created");
    assert_eq!(bus.topic_of(&topic).unwrap(), format!("{prefix}{topic}"));
    bus.ensure_stream(StreamConfig::new("created", &[&topic]))
        .await
        .expect("ensure_stream");
    let partitions = bus.partitions(&topic).await.expect("metadata");
    assert_eq!(
        partitions,
        Some(vec![0, 1, 2]),
        "KAFKA_TOPIC_PARTITIONS default"
    );
    // Idempotent: the topic exists now.
    bus.ensure_stream(StreamConfig::new("created", &[&topic]))
        .await
        .expect("ensure_stream again");

    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts(8, 10))
        .await
        .expect("subscribe_group");
    let sent = Message::new(&topic, r#"{"order_id":"x"}"#)
        .with_key("order-1")
        .with_header(header::EVENT_ID, "e-1")
        .with_header(header::EVENT_TYPE, "new_order");
    bus.publish(sent.clone()).await.expect("publish");
    let d = next(&mut sub, WAIT, "the message").await;
    // The subject comes back without the deployment's topic prefix.
    assert_eq!(d.message, sent);
    assert_eq!(d.attempt, 1);
    assert!(d.ack());
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_contiguous_acked_prefix_is_committed() {
    let b = kafka_or_skip!();
    let mut c = config(&b);
    // One partition: the records' order is the offsets' order.
    c.topic_partitions = 1;
    let bus = KafkaBus::new(c).expect("bus");
    let topic = unique("prefix");
    let group = unique("g");
    bus.ensure_stream(StreamConfig::new("prefix", &[&topic]))
        .await
        .expect("ensure_stream");
    for i in 0..5 {
        bus.publish(Message::new(&topic, format!("m{i}")))
            .await
            .expect("publish");
    }

    let mut first = bus
        .subscribe_group(&topic, &group, opts(8, 10))
        .await
        .expect("subscribe");
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut first, WAIT, "a first delivery").await);
    }
    assert_eq!(
        held.iter().map(text).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    // Everything but the head: nothing may be committed.
    for d in &held[1..] {
        assert!(d.ack());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.close();
    drop(held);

    let mut second = bus
        .subscribe_group(&topic, &group, opts(8, 10))
        .await
        .expect("subscribe again");
    let mut again = Vec::new();
    for _ in 0..5 {
        let d = next(&mut second, WAIT, "a redelivery behind the un-acked head").await;
        again.push(text(&d));
        assert!(d.ack());
    }
    assert_eq!(again, ["m0", "m1", "m2", "m3", "m4"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    second.close();

    let mut third = bus
        .subscribe_group(&topic, &group, opts(8, 10))
        .await
        .expect("subscribe a third time");
    bus.publish(Message::new(&topic, "m5"))
        .await
        .expect("publish");
    let d = next(&mut third, WAIT, "the new message").await;
    assert_eq!(text(&d), "m5", "an acked message came back");
    d.ack();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_deliveries_go_to_the_dead_letter_topic() {
    let b = kafka_or_skip!();
    let bus = KafkaBus::new(config(&b)).expect("bus");
    let topic = unique("poison");
    bus.ensure_stream(StreamConfig::new("poison", &[&topic]))
        .await
        .expect("ensure_stream");
    let mut dlq = bus
        .subscribe(&format!("{topic}.dlq"))
        .await
        .expect("subscribe to the dead letters");
    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts(8, 2))
        .await
        .expect("subscribe");
    bus.publish(Message::new(&topic, "poison").with_key("k"))
        .await
        .expect("publish");
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let d = next(&mut sub, WAIT, "the poison message").await;
        attempts.push(d.attempt);
        assert!(d.nack(Duration::ZERO));
    }
    assert_eq!(attempts, [1, 2]);
    let dead = next(&mut dlq, WAIT, "the dead letter").await;
    assert_eq!(text(&dead), "poison");
    assert_eq!(dead.message.key.as_deref(), Some("k"));
    assert_eq!(
        dead.message.header("orderly-original-topic"),
        Some(topic.as_str())
    );
    assert_eq!(dead.message.header("orderly-deliveries"), Some("2"));
    bus.publish(Message::new(&topic, "good"))
        .await
        .expect("publish");
    let d = next(&mut sub, WAIT, "the next message").await;
    assert_eq!(text(&d), "good", "the poison message came back");
    d.ack();
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_neither_loses_nor_recommits_on_rebalance() {
    let b = kafka_or_skip!();
    let bus = KafkaBus::new(config(&b)).expect("bus");
    let other = KafkaBus::new(config(&b)).expect("second client");
    let topic = unique("rebalance");
    let group = unique("g");
    bus.ensure_stream(StreamConfig::new("rebalance", &[&topic]))
        .await
        .expect("ensure_stream");
    let all: BTreeSet<String> = (0..30).map(|i| format!("m{i:02}")).collect();
    for (i, p) in all.iter().enumerate() {
        bus.publish(Message::new(&topic, p.clone()).with_key(format!("key-{i}")))
            .await
            .expect("publish");
    }
    let mut a = bus
        .subscribe_group(&topic, &group, opts(64, 10))
        .await
        .expect("member a");
    let mut held = Vec::new();
    let mut acked = BTreeSet::new();
    for i in 0..30 {
        let d = next(&mut a, WAIT, "a delivery to member a").await;
        if i < 10 {
            assert!(d.ack());
            acked.insert(text(&d));
        } else {
            held.push(d);
        }
    }
    // Let the acks reach the consumer loop before the rebalance.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut b_sub = other
        .subscribe_group(&topic, &group, opts(64, 10))
        .await
        .expect("member b");

    // Every un-acked message comes back (to a or b), no acked one does; then
    // keyed batches until b owns a partition (the rebalance takes its time).
    let mut want: BTreeSet<String> = all.difference(&acked).cloned().collect();
    let mut seen = BTreeSet::new();
    let mut from_b = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut batch = 0;
    while !want.is_subset(&seen) || from_b == 0 {
        if want.is_subset(&seen) {
            for i in 0..10 {
                let p = format!("b{batch}-{i}");
                other
                    .publish(Message::new(&topic, p.clone()).with_key(format!("{batch}-{i}")))
                    .await
                    .expect("publish");
                want.insert(p);
            }
            batch += 1;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let d = tokio::select! {
            d = a.next() => d,
            d = b_sub.next() => { from_b += 1; d }
            _ = tokio::time::sleep(left) => panic!(
                "after the rebalance: {} messages missing ({:?}), {from_b} deliveries to the joining member",
                want.difference(&seen).count(),
                want.difference(&seen).take(5).collect::<Vec<_>>()
            ),
        }
        .expect("a subscription ended");
        let p = text(&d);
        assert!(
            !acked.contains(&p),
            "{p} was acked before the rebalance but came back"
        );
        seen.insert(p);
        d.ack();
    }
    drop(held);
    bus.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_bounds_unacked_deliveries_and_a_backlog_drains() {
    let b = kafka_or_skip!();
    let bus = KafkaBus::new(config(&b)).expect("bus");
    let topic = unique("backlog");
    bus.ensure_stream(StreamConfig::new("backlog", &[&topic]))
        .await
        .expect("ensure_stream");
    // Far more than the pause threshold, so the partitions pause and resume.
    let all: BTreeSet<String> = (0..150).map(|i| format!("m{i:03}")).collect();
    for (i, p) in all.iter().enumerate() {
        bus.publish(Message::new(&topic, p.clone()).with_key(format!("k{}", i % 9)))
            .await
            .expect("publish");
    }
    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts(2, 10))
        .await
        .expect("subscribe");
    let first = next(&mut sub, WAIT, "the first delivery").await;
    let second = next(&mut sub, WAIT, "the second delivery").await;
    if let Ok(Some(third)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
        panic!("a third delivery with two un-acked and max_in_flight 2: {third:?}");
    }
    let mut seen: BTreeSet<String> = [text(&first), text(&second)].into();
    first.ack();
    second.ack();
    while !all.is_subset(&seen) {
        let d = next(&mut sub, WAIT, "the backlog").await;
        seen.insert(text(&d));
        d.ack();
    }
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_replayed_and_purged() {
    let b = kafka_or_skip!();
    let bus = KafkaBus::new(config(&b)).expect("bus");
    let topic = unique("dead");
    let stream = StreamConfig::new("dead", &[&topic]);
    bus.ensure_stream(stream.clone())
        .await
        .expect("ensure_stream");
    let group = unique("g");
    let mut sub = bus
        .subscribe_group(&topic, &group, opts(8, 1))
        .await
        .expect("subscribe");
    for p in ["first", "second"] {
        bus.publish(
            Message::new(&topic, p)
                .with_key(format!("order-{p}"))
                .with_header(header::EVENT_ID, format!("e-{p}")),
        )
        .await
        .expect("publish");
        let d = next(&mut sub, WAIT, "a message to give up on").await;
        assert_eq!(text(&d), p);
        assert!(d.nack(Duration::ZERO));
    }
    let deadline = Instant::now() + WAIT;
    let dead = loop {
        let dead = bus.dead_letters(&stream, 10).await.expect("list");
        if dead.len() == 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "dead letters: {dead:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let first = dead
        .iter()
        .find(|d| d.message.payload == "first")
        .expect("first is dead");
    assert_eq!(first.message.subject, topic);
    assert_eq!(first.message.key.as_deref(), Some("order-first"));
    assert_eq!(first.message.header(header::EVENT_ID), Some("e-first"));
    assert_eq!(
        first.message.headers.len(),
        1,
        "only the message's own headers"
    );
    assert_eq!(first.group, group);
    assert_eq!(first.reason, "max deliveries reached");
    assert_eq!(first.deliveries, 1);
    assert!(first.dead_at.is_some());
    assert_eq!(bus.dead_letters(&stream, 1).await.expect("list").len(), 1);

    assert!(bus.replay_dead(&stream, &first.id).await.expect("replay"));
    let back = next(&mut sub, WAIT, "the replayed message").await;
    assert_eq!((text(&back).as_str(), back.attempt), ("first", 1));
    assert_eq!(back.message.header(header::EVENT_ID), Some("e-first"));
    assert!(back.ack());
    assert!(
        !bus.replay_dead(&stream, &first.id).await.expect("replay"),
        "replayed already"
    );

    let second = dead
        .iter()
        .find(|d| d.message.payload == "second")
        .expect("second is dead");
    assert!(bus.purge_dead(&stream, &second.id).await.expect("purge"));
    assert!(!bus.purge_dead(&stream, &second.id).await.expect("purge"));
    assert!(
        bus.dead_letters(&stream, 10)
            .await
            .expect("list")
            .is_empty()
    );
    // Another stream does not see them.
    let other = StreamConfig::new("other", &[&unique("other")]);
    assert!(bus.dead_letters(&other, 10).await.expect("list").is_empty());
    bus.close().await;
}
