//! Fault injection on librdkafka's in-process mock cluster: brokers going down,
//! request errors and leader changes. Needs no external broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use orderly_bus::{Bus, BusError, GroupOptions, Message, StreamConfig, Subscription};
use orderly_kafka::{KafkaBus, KafkaConfig};

use common::{next, text, unique};

const WAIT: Duration = Duration::from_secs(20);

fn opts() -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 10,
        max_in_flight: 64,
    }
}

fn config(bootstrap: String, message_timeout: Duration) -> KafkaConfig {
    let mut c = KafkaConfig::new(bootstrap);
    c.message_timeout = message_timeout;
    c.request_timeout = Duration::from_secs(2);
    c.client_id = "orderly-kafka-mock-tests".into();
    c
}

/// Acks everything and counts each payload until all of `want` arrived, then
/// keeps listening for `linger` to catch duplicates.
async fn count_until(
    sub: &mut Subscription,
    want: &BTreeSet<String>,
    linger: Duration,
) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !want.iter().all(|w| counts.contains_key(w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let d = next(sub, left, "an acknowledged publish").await;
        *counts.entry(text(&d)).or_default() += 1;
        d.ack();
    }
    while let Ok(Some(d)) = tokio::time::timeout(linger, sub.next()).await {
        *counts.entry(text(&d)).or_default() += 1;
        d.ack();
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_a_down_cluster_fails_clearly_and_consumers_resume_after() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let topic = unique("down");
    mock.create_topic(&topic, 3, 1).expect("topic");
    let bus = KafkaBus::new(config(
        mock.bootstrap_servers(),
        Duration::from_millis(1500),
    ))
    .expect("bus");
    bus.check().await.expect("the mock cluster is up");
    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts())
        .await
        .expect("subscribe");
    bus.publish(Message::new(&topic, "before"))
        .await
        .expect("publish before the outage");
    let d = next(&mut sub, WAIT, "the message before the outage").await;
    assert_eq!(text(&d), "before");
    d.ack();

    mock.broker_down(1).expect("broker down");
    let t0 = Instant::now();
    match bus.publish(Message::new(&topic, "during")).await {
        Err(BusError::Unavailable(why)) => {
            assert!(
                why.contains("did not confirm delivery"),
                "unclear error: {why}"
            );
            println!(
                "publish during the outage failed after {:?}: {why}",
                t0.elapsed()
            );
        }
        other => panic!("publish to a down cluster gave {other:?}"),
    }
    let down = bus.check().await;
    assert!(
        matches!(down, Err(BusError::Unavailable(_))),
        "check while down gave {down:?}"
    );

    mock.broker_up(1).expect("broker up");
    let deadline = Instant::now() + WAIT;
    loop {
        match bus.publish(Message::new(&topic, "after")).await {
            Ok(()) => break,
            Err(BusError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish after the outage failed: {e}"),
        }
    }
    // A timed-out message may or may not have been written (Kafka cannot
    // tell), and an ack not yet committed when the broker went away may be
    // delivered again (at least once); "after" must come.
    loop {
        let d = next(&mut sub, WAIT, "the message after the outage").await;
        let p = text(&d);
        d.ack();
        match p.as_str() {
            "after" => break,
            "during" | "before" => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
    bus.check().await.expect("ready again after the outage");
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_of_a_burst_across_an_outage_is_consumed_once() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let topic = unique("burst");
    mock.create_topic(&topic, 3, 3).expect("topic");
    let bus =
        KafkaBus::new(config(mock.bootstrap_servers(), Duration::from_secs(15))).expect("bus");
    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts())
        .await
        .expect("subscribe");
    // The group must own its partitions before the outage, or the first
    // fetch would wait for the cluster as well.
    bus.publish(Message::new(&topic, "warm-up"))
        .await
        .expect("warm-up publish");
    next(&mut sub, WAIT, "the warm-up message").await.ack();

    let n = 300;
    let mut publishes = tokio::task::JoinSet::new();
    for i in 0..n {
        let bus = bus.clone();
        let topic = topic.clone();
        publishes.spawn(async move {
            let payload = format!("m{i:04}");
            let m = Message::new(&topic, payload.clone()).with_key(format!("key-{}", i % 10));
            (payload, bus.publish(m).await)
        });
        if i == n / 3 {
            for broker in 1..=3 {
                mock.broker_down(broker).expect("broker down");
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for broker in 1..=3 {
        mock.broker_up(broker).expect("broker up");
    }
    let mut acknowledged = BTreeSet::new();
    let mut failed = 0;
    while let Some(joined) = publishes.join_next().await {
        let (payload, result) = joined.expect("publish task");
        match result {
            Ok(()) => {
                acknowledged.insert(payload);
            }
            Err(BusError::Unavailable(why)) => {
                failed += 1;
                eprintln!("{payload} not acknowledged: {why}");
            }
            Err(e) => panic!("{payload}: unexpected error {e}"),
        }
    }
    assert!(!acknowledged.is_empty(), "no publish survived the outage");
    let counts = count_until(&mut sub, &acknowledged, Duration::from_secs(2)).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "consumed more than once (idempotent producer, no rebalance): {twice:?}"
    );
    println!(
        "burst across an outage: {} acknowledged, {failed} failed, {} consumed",
        acknowledged.len(),
        counts.len()
    );
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_and_a_leader_change_are_retried_without_duplicates() {
    let mock = MockCluster::new(3).expect("mock cluster");
    let topic = unique("leader");
    mock.create_topic(&topic, 3, 3).expect("topic");
    let bus =
        KafkaBus::new(config(mock.bootstrap_servers(), Duration::from_secs(15))).expect("bus");
    let mut sub = bus
        .subscribe_group(&topic, &unique("g"), opts())
        .await
        .expect("subscribe");
    let mut want = BTreeSet::new();
    for i in 0..90 {
        match i {
            20 => mock.request_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                ],
            ),
            50 => {
                for partition in 0..3 {
                    mock.partition_leader(&topic, partition, Some(1 + (partition + 1) % 3))
                        .expect("leader change");
                }
            }
            _ => {}
        }
        let payload = format!("m{i:03}");
        bus.publish(Message::new(&topic, payload.clone()).with_key(format!("key-{}", i % 7)))
            .await
            .unwrap_or_else(|e| panic!("publish {payload} failed: {e}"));
        want.insert(payload);
    }
    let counts = count_until(&mut sub, &want, Duration::from_secs(1)).await;
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "consumed more than once: {twice:?}");
    bus.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_shows_in_check_and_publish_without_blocking_start() {
    // Nothing listens on port 9 of loopback (discard), so nothing answers.
    let mut c = config("127.0.0.1:9".into(), Duration::from_millis(1000));
    c.request_timeout = Duration::from_millis(800);
    let bus = KafkaBus::new(c).expect("creating the clients needs no broker");
    let e = bus.check().await.expect_err("check must fail");
    assert!(matches!(e, BusError::Unavailable(_)), "{e:?}");
    let e = bus
        .publish(Message::new(unique("nowhere"), "x"))
        .await
        .expect_err("publish must fail");
    assert!(matches!(e, BusError::Unavailable(_)), "{e:?}");
    bus.close().await;
    assert!(matches!(
        bus.publish(Message::new("t", "x")).await,
        Err(BusError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_dead_letter_copy_fails_stays_uncommitted_and_comes_back() {
    let mock = MockCluster::new(1).expect("mock cluster");
    let topic = unique("dlqfail");
    let dlq = format!("{topic}.dlq");
    mock.create_topic(&topic, 1, 1).expect("topic");
    // The dead-letter topic cannot be looked up or created: every copy fails.
    mock.topic_error(
        &dlq,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
    )
    .expect("topic error");
    let group = unique("g");
    let once = GroupOptions {
        max_deliveries: 1,
        ..opts()
    };
    let first =
        KafkaBus::new(config(mock.bootstrap_servers(), Duration::from_secs(5))).expect("bus");
    let mut sub = first
        .subscribe_group(&topic, &group, once)
        .await
        .expect("subscribe");
    for p in ["poison", "good"] {
        first
            .publish(Message::new(&topic, p))
            .await
            .expect("publish");
    }
    let poison = next(&mut sub, WAIT, "the poison message").await;
    assert_eq!(text(&poison), "poison");
    assert!(poison.nack(Duration::ZERO), "its only delivery failed");
    let good = next(&mut sub, WAIT, "the message after it").await;
    assert_eq!(text(&good), "good");
    assert!(good.ack());
    // Long enough for the failed copy and a commit round; the commit point
    // must still be before the poison message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        first
            .dead_letters(&StreamConfig::new("s", &[&topic]), 10)
            .await
            .expect("list")
            .is_empty(),
        "no copy reached the dead letters"
    );
    drop(sub);
    first.close().await;

    let second =
        KafkaBus::new(config(mock.bootstrap_servers(), Duration::from_secs(5))).expect("bus");
    let mut sub = second
        .subscribe_group(&topic, &group, once)
        .await
        .expect("subscribe again");
    let again = next(
        &mut sub,
        WAIT,
        "the record whose dead-letter copy failed, delivered again",
    )
    .await;
    assert_eq!(text(&again), "poison");
    // The dead-letter topic works again: this time the copy lands there.
    mock.topic_error(&dlq, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .expect("clear the topic error");
    assert!(again.nack(Duration::ZERO));
    let deadline = Instant::now() + WAIT;
    loop {
        let dead = second
            .dead_letters(&StreamConfig::new("s", &[&topic]), 10)
            .await
            .expect("list");
        if let Some(d) = dead.first() {
            assert_eq!(d.message.payload, "poison");
            assert_eq!(d.message.subject, topic);
            assert_eq!(d.reason, "max deliveries reached");
            break;
        }
        assert!(Instant::now() < deadline, "the copy never reached {dlq}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.close().await;
}
