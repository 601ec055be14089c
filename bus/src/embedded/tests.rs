//! Broker tests, run against the memory and the file store where both apply.

use std::io::Write;
use std::time::Duration;

use super::*;
use crate::Delivery;

async fn in_memory() -> EmbeddedBroker {
    EmbeddedBroker::open(BrokerConfig::default()).await.unwrap()
}

async fn on_disk(dir: &Path) -> EmbeddedBroker {
    EmbeddedBroker::open(BrokerConfig {
        data_dir: Some(dir.to_path_buf()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap()
}

/// A memory broker and a file broker (with its directory kept alive).
async fn both() -> Vec<(EmbeddedBroker, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    vec![
        (in_memory().await, None),
        (on_disk(dir.path()).await, Some(dir)),
    ]
}

fn opts(ack_wait_ms: u64, max_deliveries: u32) -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_millis(ack_wait_ms),
        max_deliveries,
        max_in_flight: 64,
    }
}

async fn next(sub: &mut Subscription) -> Delivery {
    tokio::time::timeout(Duration::from_secs(3), sub.next())
        .await
        .expect("a delivery within 3s")
        .expect("subscription open")
}

async fn nothing_within(sub: &mut Subscription, ms: u64) {
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(ms), sub.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message.payload).into_owned()
}

async fn orders_stream(b: &EmbeddedBroker) {
    b.ensure_stream(StreamConfig::new("orders", &["orders.>"]))
        .await
        .unwrap();
}

async fn publish_n(b: &EmbeddedBroker, subject: &str, n: usize) {
    for i in 1..=n {
        b.publish(Message::new(subject, format!("m{i}")))
            .await
            .unwrap();
    }
}

fn log_path(dir: &Path, stream: &str) -> PathBuf {
    dir.join("broker").join(format!("{stream}.log"))
}

/// Waits until the stream's log was rewritten `at_least` times; the broker's
/// maintenance task compacts in the background.
async fn compacted(s: &StreamShared, at_least: u64) {
    for _ in 0..1000 {
        if s.lock().compactions() >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the log was not compacted within 10 s");
}

/// The payloads group `g` on `orders.>` gets (unacked), until nothing comes for a while.
async fn drain_orders(b: &EmbeddedBroker) -> Vec<String> {
    let options = GroupOptions {
        max_in_flight: 10_000,
        ..opts(5000, 5)
    };
    let mut sub = b.subscribe_group("orders.>", "g", options).await.unwrap();
    let mut got = Vec::new();
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        got.push(text(&d));
    }
    got
}

#[tokio::test]
async fn plain_subscribers_all_get_messages_published_after_they_subscribed() {
    let b = in_memory().await;
    b.publish(Message::new("orders.eu.created", "before"))
        .await
        .unwrap();
    let mut star = b.subscribe("orders.*.created").await.unwrap();
    let mut gt = b.subscribe("orders.>").await.unwrap();
    let mut other = b.subscribe("payments.>").await.unwrap();
    b.publish(Message::new("orders.eu.created", "after").with_header("h", "v"))
        .await
        .unwrap();
    for sub in [&mut star, &mut gt] {
        let d = next(sub).await;
        assert_eq!(text(&d), "after");
        assert_eq!(d.message.header("h"), Some("v"));
        assert_eq!(d.attempt, 1);
    }
    nothing_within(&mut star, 30).await;
    nothing_within(&mut other, 30).await;
}

#[tokio::test]
async fn invalid_subjects_and_oversized_payloads_are_rejected() {
    let b = EmbeddedBroker::open(BrokerConfig {
        max_payload: 8,
        ..BrokerConfig::default()
    })
    .await
    .unwrap();
    for bad in ["", "a..b", "a.*", "a.>", "a b"] {
        let err = b.publish(Message::new(bad, "x")).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject(..)),
            "{bad:?}: {err}"
        );
    }
    assert!(matches!(
        b.subscribe("a.>.b").await,
        Err(BusError::InvalidSubject(..))
    ));
    let err = b.publish(Message::new("a", "123456789")).await.unwrap_err();
    assert!(
        matches!(err, BusError::PayloadTooLarge { size: 9, max: 8 }),
        "{err}"
    );
    b.publish(Message::new("a", "12345678")).await.unwrap();
}

#[tokio::test]
async fn a_core_queue_group_splits_messages_between_its_members() {
    let b = in_memory().await;
    let mut m1 = b.subscribe_queue("work.*", "g").await.unwrap();
    let mut m2 = b.subscribe_queue("work.*", "g").await.unwrap();
    publish_n(&b, "work.a", 20).await;
    let mut got = Vec::new();
    let mut per_member = [0; 2];
    for (i, sub) in [&mut m1, &mut m2].into_iter().enumerate() {
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(30), sub.next()).await {
            got.push(text(&d));
            per_member[i] += 1;
        }
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 20, "every message exactly once");
    assert!(per_member.iter().all(|n| *n > 0), "{per_member:?}");
}

#[tokio::test]
async fn a_durable_group_gets_messages_published_before_it_existed() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        publish_n(&b, "orders.created", 3).await;
        let mut sub = b
            .subscribe_group("orders.created", "billing", opts(5000, 5))
            .await
            .unwrap();
        for i in 1..=3 {
            let d = next(&mut sub).await;
            assert_eq!(text(&d), format!("m{i}"));
            assert!(d.ack());
        }
        nothing_within(&mut sub, 30).await;
    }
}

#[tokio::test]
async fn a_group_needs_a_stream_for_its_subject() {
    let b = in_memory().await;
    orders_stream(&b).await;
    let err = b
        .subscribe_group("payments.created", "g", opts(100, 3))
        .await
        .err();
    assert!(matches!(err, Some(BusError::NoStream(_))), "{err:?}");
    // `>` covers more than `orders.*` can: not captured by a narrower stream.
    b.ensure_stream(StreamConfig::new("narrow", &["shipments.*"]))
        .await
        .unwrap();
    assert!(matches!(
        b.subscribe_group("shipments.>", "g", opts(100, 3)).await,
        Err(BusError::NoStream(_))
    ));
    b.subscribe_group("shipments.*", "g", opts(100, 3))
        .await
        .unwrap();
    // Publishing where no stream listens is fine.
    b.publish(Message::new("nobody.listens", "x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn streams_with_overlapping_subjects_are_refused() {
    let b = in_memory().await;
    orders_stream(&b).await;
    let err = b
        .ensure_stream(StreamConfig::new("other", &["orders.eu"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlaps"), "{err}");
    orders_stream(&b).await;
}

#[tokio::test]
async fn members_of_a_durable_group_share_the_work() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let o = GroupOptions {
            max_in_flight: 4,
            ..opts(5000, 5)
        };
        let mut m1 = b.subscribe_group("orders.>", "g", o).await.unwrap();
        let mut m2 = b.subscribe_group("orders.>", "g", o).await.unwrap();
        publish_n(&b, "orders.x", 40).await;
        let mut seen = Vec::new();
        let mut counts = [0; 2];
        'outer: loop {
            for (i, sub) in [&mut m1, &mut m2].into_iter().enumerate() {
                match tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
                    Ok(Some(d)) => {
                        counts[i] += 1;
                        seen.push(text(&d));
                        d.ack();
                    }
                    _ if seen.len() >= 40 => break 'outer,
                    _ => {}
                }
            }
        }
        seen.sort();
        let before = seen.len();
        seen.dedup();
        assert_eq!(
            (before, seen.len()),
            (40, 40),
            "each message to exactly one member"
        );
        assert!(
            counts.iter().all(|c| *c > 0),
            "both members worked: {counts:?}"
        );
    }
}

#[tokio::test]
async fn an_unacked_delivery_comes_back_after_the_ack_wait() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let mut sub = b
            .subscribe_group("orders.>", "g", opts(100, 5))
            .await
            .unwrap();
        b.publish(Message::new("orders.a", "x")).await.unwrap();
        let first = next(&mut sub).await;
        assert_eq!(first.attempt, 1);
        let started = tokio::time::Instant::now();
        nothing_within(&mut sub, 60).await;
        let again = next(&mut sub).await;
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert_eq!(text(&again), "x");
        assert_eq!(again.attempt, 2);
        assert!(again.ack());
        nothing_within(&mut sub, 200).await;
    }
}

#[tokio::test]
async fn a_nacked_message_is_not_redelivered_before_its_delay() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let mut sub = b
            .subscribe_group("orders.>", "g", opts(5000, 5))
            .await
            .unwrap();
        b.publish(Message::new("orders.a", "x")).await.unwrap();
        let d = next(&mut sub).await;
        let nacked_at = tokio::time::Instant::now();
        assert!(d.nack(Duration::from_millis(200)));
        assert!(!d.ack(), "the opposite decision was made already");
        nothing_within(&mut sub, 150).await;
        let again = next(&mut sub).await;
        assert!(nacked_at.elapsed() >= Duration::from_millis(200));
        assert_eq!(again.attempt, 2);
        again.ack();
    }
}

#[tokio::test]
async fn a_message_goes_to_the_dead_letters_after_max_deliveries() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let mut sub = b
            .subscribe_group("orders.>", "g", opts(5000, 3))
            .await
            .unwrap();
        b.publish(Message::new("orders.a", "poison")).await.unwrap();
        b.publish(Message::new("orders.b", "fine")).await.unwrap();
        let mut attempts = Vec::new();
        loop {
            let d = next(&mut sub).await;
            if text(&d) == "fine" {
                d.ack();
                continue;
            }
            attempts.push(d.attempt);
            d.nack(Duration::ZERO);
            if attempts.len() == 3 {
                break;
            }
        }
        assert_eq!(attempts, vec![1, 2, 3]);
        nothing_within(&mut sub, 100).await;
        let s = b.stream_for_test("orders");
        let s = s.lock();
        let dead: Vec<_> = s.dead_letters(0).collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].stored.msg.payload, "poison");
        assert_eq!(dead[0].deliveries, 3);
        assert_eq!(
            s.message_count(),
            0,
            "dead-lettered and acked messages are deleted"
        );
    }
}

#[tokio::test]
async fn closing_a_subscription_returns_its_unacked_messages_at_once() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let mut first = b
            .subscribe_group("orders.>", "g", opts(60_000, 5))
            .await
            .unwrap();
        publish_n(&b, "orders.a", 2).await;
        let d1 = next(&mut first).await;
        assert_eq!(text(&d1), "m1");
        first.close();
        let mut second = b
            .subscribe_group("orders.>", "g", opts(60_000, 5))
            .await
            .unwrap();
        let mut got = vec![
            text(&next(&mut second).await),
            text(&next(&mut second).await),
        ];
        got.sort();
        assert_eq!(got, vec!["m1", "m2"], "well before the 60s ack wait");
    }
}

#[tokio::test]
async fn a_subscription_holds_at_most_max_in_flight_unacked_messages() {
    let b = in_memory().await;
    orders_stream(&b).await;
    let mut sub = b
        .subscribe_group(
            "orders.>",
            "g",
            GroupOptions {
                max_in_flight: 2,
                ..opts(5000, 5)
            },
        )
        .await
        .unwrap();
    publish_n(&b, "orders.a", 5).await;
    let d1 = next(&mut sub).await;
    let _d2 = next(&mut sub).await;
    nothing_within(&mut sub, 80).await;
    d1.ack();
    assert_eq!(text(&next(&mut sub).await), "m3");
}

#[tokio::test]
async fn messages_of_one_key_wait_for_the_one_in_flight() {
    let b = in_memory().await;
    orders_stream(&b).await;
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    for (key, body) in [("a", "a1"), ("a", "a2"), ("b", "b1")] {
        b.publish(Message::new("orders.x", body).with_key(key))
            .await
            .unwrap();
    }
    let first = next(&mut sub).await;
    let second = next(&mut sub).await;
    assert_eq!((text(&first), text(&second)), ("a1".into(), "b1".into()));
    nothing_within(&mut sub, 50).await;
    first.ack();
    assert_eq!(text(&next(&mut sub).await), "a2");
}

#[tokio::test]
async fn groups_with_different_filters_each_get_their_messages() {
    for (b, _dir) in both().await {
        orders_stream(&b).await;
        let mut eu = b
            .subscribe_group("orders.eu", "g", opts(5000, 5))
            .await
            .unwrap();
        let mut all = b
            .subscribe_group("orders.*", "g", opts(5000, 5))
            .await
            .unwrap();
        b.publish(Message::new("orders.eu", "1")).await.unwrap();
        b.publish(Message::new("orders.us", "2")).await.unwrap();
        assert_eq!(text(&next(&mut eu).await), "1");
        nothing_within(&mut eu, 30).await;
        let mut got = vec![text(&next(&mut all).await), text(&next(&mut all).await)];
        got.sort();
        assert_eq!(got, vec!["1", "2"]);
    }
}

#[tokio::test]
async fn a_message_is_deleted_once_every_matching_group_acked_it() {
    let b = in_memory().await;
    orders_stream(&b).await;
    let mut g1 = b
        .subscribe_group("orders.>", "one", opts(5000, 5))
        .await
        .unwrap();
    let mut g2 = b
        .subscribe_group("orders.>", "two", opts(5000, 5))
        .await
        .unwrap();
    b.publish(Message::new("orders.a", "x")).await.unwrap();
    let s = b.stream_for_test("orders");
    next(&mut g1).await.ack();
    assert_eq!(s.lock().message_count(), 1, "group two has not acked yet");
    next(&mut g2).await.ack();
    assert_eq!(s.lock().message_count(), 0);
    drop((g1, g2));
    b.ensure_stream(StreamConfig::new("misc", &["misc.*"]))
        .await
        .unwrap();
    b.publish(Message::new("misc.kept", "k")).await.unwrap();
    let m = b.stream_for_test("misc");
    assert_eq!(m.lock().message_count(), 1, "kept while no group matches");
    let mut late = b
        .subscribe_group("misc.kept", "late", opts(5000, 5))
        .await
        .unwrap();
    assert_eq!(text(&next(&mut late).await), "k");
}

#[tokio::test]
async fn after_a_restart_only_unacked_messages_are_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = on_disk(dir.path()).await;
        orders_stream(&b).await;
        let mut sub = b
            .subscribe_group("orders.>", "g", opts(5000, 5))
            .await
            .unwrap();
        publish_n(&b, "orders.a", 5).await;
        for _ in 0..5 {
            let d = next(&mut sub).await;
            if ["m1", "m2", "m4"].contains(&text(&d).as_str()) {
                d.ack();
            }
        }
        b.close().await;
        assert!(matches!(
            b.publish(Message::new("orders.a", "late")).await,
            Err(BusError::Closed)
        ));
        assert!(
            sub.next().await.is_none(),
            "closing the bus ends subscriptions"
        );
    }
    let b = on_disk(dir.path()).await;
    assert!(b.features().durable);
    // The stream and its group come back from the log without ensure_stream.
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    let d3 = next(&mut sub).await;
    let d5 = next(&mut sub).await;
    assert_eq!((text(&d3), d3.attempt), ("m3".into(), 2));
    assert_eq!((text(&d5), d5.attempt), ("m5".into(), 2));
    nothing_within(&mut sub, 50).await;
    // Sequence numbers continue.
    b.publish(Message::new("orders.a", "m6")).await.unwrap();
    assert_eq!(text(&next(&mut sub).await), "m6");
}

#[tokio::test]
async fn a_nack_delay_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = on_disk(dir.path()).await;
        orders_stream(&b).await;
        let mut sub = b
            .subscribe_group("orders.>", "g", opts(5000, 5))
            .await
            .unwrap();
        b.publish(Message::new("orders.a", "x")).await.unwrap();
        next(&mut sub).await.nack(Duration::from_millis(400));
        b.close().await;
    }
    let started = tokio::time::Instant::now();
    let b = on_disk(dir.path()).await;
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    nothing_within(&mut sub, 200).await;
    let d = next(&mut sub).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(d.attempt, 2);
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_earlier_messages_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = on_disk(dir.path()).await;
        orders_stream(&b).await;
        publish_n(&b, "orders.a", 3).await;
        b.close().await;
    }
    let path = log_path(dir.path(), "orders");
    // A crash mid-append: half a record, then garbage.
    let len = fs::metadata(&path).unwrap().len();
    {
        let b = on_disk(dir.path()).await;
        b.publish(Message::new("orders.a", "m4 is torn"))
            .await
            .unwrap();
        b.close().await;
    }
    let full = fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len + (full - len) / 2).unwrap();
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"\x10\x00\x00\x00garbage!").unwrap();
    drop(f);

    let b = on_disk(dir.path()).await;
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    for i in 1..=3 {
        assert_eq!(text(&next(&mut sub).await), format!("m{i}"));
    }
    nothing_within(&mut sub, 50).await;
    b.publish(Message::new("orders.a", "after")).await.unwrap();
    assert_eq!(text(&next(&mut sub).await), "after");
    b.close().await;
    drop((b, sub));
    let b = on_disk(dir.path()).await;
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(text(&next(&mut sub).await));
    }
    assert_eq!(got, vec!["m1", "m2", "m3", "after"]);
}

#[tokio::test]
async fn a_file_of_pure_garbage_does_not_stop_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("broker")).unwrap();
    fs::write(
        log_path(dir.path(), "junk"),
        b"\xff\xff\xff\xffnot a log at all",
    )
    .unwrap();
    let b = on_disk(dir.path()).await;
    b.check().await.unwrap();
    let kept = fs::metadata(log_path(dir.path(), "junk")).unwrap().len();
    assert!(
        kept < 64,
        "only a fresh config record is left, {kept} bytes"
    );
    orders_stream(&b).await;
}

#[tokio::test]
async fn a_data_directory_is_used_by_one_broker_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = on_disk(dir.path()).await;
    let err = EmbeddedBroker::open(BrokerConfig {
        data_dir: Some(dir.path().to_path_buf()),
        ..BrokerConfig::default()
    })
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BusError::Unavailable(_)), "{msg}");
    assert!(
        msg.contains("is in use by another orderly process")
            && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
    first.close().await;
    let second = on_disk(dir.path()).await;
    second.check().await.unwrap();
}

#[tokio::test]
async fn the_log_is_compacted_when_mostly_dead() {
    let dir = tempfile::tempdir().unwrap();
    let b = on_disk(dir.path()).await;
    orders_stream(&b).await;
    let s = b.stream_for_test("orders");
    s.lock().set_compact_min_bytes(8 * 1024);
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    let body = "x".repeat(500);
    for i in 0..40 {
        b.publish(Message::new("orders.a", format!("{i}:{body}")))
            .await
            .unwrap();
    }
    let grown = s.lock().store_size();
    assert!(grown > 20_000);
    for _ in 0..39 {
        next(&mut sub).await.ack();
    }
    let last = next(&mut sub).await;
    assert!(text(&last).starts_with("39:"));
    compacted(&s, 1).await;
    let size = s.lock().store_size();
    assert!(size < grown / 2, "compacted from {grown} to {size}");
    assert_eq!(
        fs::metadata(log_path(dir.path(), "orders")).unwrap().len(),
        size
    );
    b.close().await;
    drop((b, sub, s));
    let b = on_disk(dir.path()).await;
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    let again = next(&mut sub).await;
    assert!(text(&again).starts_with("39:"));
    nothing_within(&mut sub, 50).await;
}

/// Dedup ids outlive their jobs and are carried by every compaction. They
/// once were left out of the live size, so past the threshold every ack
/// rewrote the whole log (the queue crawled and stalled for seconds).
#[tokio::test]
async fn remembered_job_ids_do_not_make_every_ack_compact_the_log() {
    use crate::{JobQueue, NewJob, RetryPolicy};
    let dir = tempfile::tempdir().unwrap();
    let b = on_disk(dir.path()).await;
    let q = EmbeddedQueue::open(&b, RetryPolicy::default())
        .await
        .unwrap();
    let s = b.stream_for_test("jobs");
    let min = 16 * 1024;
    s.lock().set_compact_min_bytes(min);
    let jobs = 4000;
    let job = |i: usize| NewJob {
        queue: "q".into(),
        id: format!("job-{i:06}"),
        payload: bytes::Bytes::from_static(b"{}"),
    };
    for i in 0..jobs {
        assert!(q.enqueue(job(i)).await.unwrap());
        let j = q
            .reserve("q", Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap()
            .expect("the job just enqueued");
        q.ack(&j).await.unwrap();
    }
    compacted(&s, 1).await;
    let (compactions, size) = {
        let s = s.lock();
        (s.compactions(), s.store_size())
    };
    // The log has to double between rewrites: a handful for ~1 MB of records
    // from 16 KiB on (it was about one per ack past ~500 jobs).
    assert!(
        compactions >= 1,
        "the log was never compacted ({size} bytes)"
    );
    assert!(
        compactions <= 10,
        "{compactions} compactions for {jobs} jobs (log now {size} bytes)"
    );
    // The ids survived the rewrites: an old job is still a duplicate.
    assert!(!q.enqueue(job(0)).await.unwrap());
    b.close().await;
    drop((q, s, b));
    let b = on_disk(dir.path()).await;
    let q = EmbeddedQueue::open(&b, RetryPolicy::default())
        .await
        .unwrap();
    assert!(!q.enqueue(job(1)).await.unwrap());
    assert!(q.enqueue(job(jobs)).await.unwrap());
}

#[tokio::test]
async fn messages_older_than_max_age_are_dropped() {
    let b = in_memory().await;
    let mut config = StreamConfig::new("short", &["short.*"]);
    config.max_age = Duration::from_millis(50);
    b.ensure_stream(config).await.unwrap();
    b.publish(Message::new("short.a", "x")).await.unwrap();
    let s = b.stream_for_test("short");
    assert_eq!(s.lock().message_count(), 1);
    tokio::time::sleep(Duration::from_millis(80)).await;
    s.lock().expire(stream::wall_ms());
    assert_eq!(s.lock().message_count(), 0);
}

/// A subject no durable group reads grows the stream only up to the cap, the
/// oldest going first; what a group still has to read is never dropped.
#[tokio::test]
async fn messages_no_group_reads_are_capped_and_a_groups_are_kept() {
    let b = in_memory().await;
    b.ensure_stream(StreamConfig::new("capped", &["capped.*"]))
        .await
        .unwrap();
    let _group = b
        .subscribe_group("capped.read", "g", GroupOptions::default())
        .await
        .unwrap();
    let s = b.stream_for_test("capped");
    for i in 0..100 {
        s.lock()
            .append(Message::new("capped.read", format!("{i}")), true)
            .unwrap();
        s.lock()
            .append(Message::new("capped.nobody", vec![0u8; 1000]), true)
            .unwrap();
    }
    assert_eq!(s.lock().message_count(), 200);
    s.lock().drop_unclaimed_over(11_000);
    // Ten unread 1 kB messages fit under the cap; every message the group
    // has not read yet stays.
    assert_eq!(s.lock().message_count(), 110);
}

#[tokio::test]
async fn a_dedup_id_is_forgotten_after_max_age() {
    let b = in_memory().await;
    let mut config = StreamConfig::new("short", &["short.*"]);
    config.max_age = Duration::from_millis(200);
    b.ensure_stream(config).await.unwrap();
    let s = b.stream_for_test("short");
    let with_id = |id: &str| {
        let mut m = Message::new("short.a", "x");
        m.headers.insert(stream::MSG_ID.into(), id.into());
        m
    };
    let append = |m: Message| s.lock().append(m, true).unwrap();
    assert!(append(with_id("old")).is_some());
    assert!(append(with_id("old")).is_none());
    // 80 ms of margin around every expiry: only a stall that long between
    // two steps could flip an outcome.
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(append(with_id("young")).is_some());
    // Nothing is due yet: both ids stay.
    s.lock().expire(stream::wall_ms());
    assert!(append(with_id("old")).is_none());
    tokio::time::sleep(Duration::from_millis(120)).await;
    s.lock().expire(stream::wall_ms());
    assert!(
        append(with_id("old")).is_some(),
        "expired id still remembered"
    );
    assert!(
        append(with_id("young")).is_none(),
        "young id forgotten early"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.lock().expire(stream::wall_ms());
    assert!(
        append(with_id("young")).is_some(),
        "expired id still remembered"
    );
}

#[tokio::test]
async fn dropping_the_last_broker_handle_ends_its_subscriptions_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let b = on_disk(dir.path()).await;
    orders_stream(&b).await;
    b.publish(Message::new("orders.a", "x")).await.unwrap();
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    let d = next(&mut sub).await;
    drop(b);
    assert!(next_or_end(&mut sub).await.is_none());
    let again = on_disk(dir.path()).await;
    // The late ack went nowhere: the new broker owns the log.
    d.ack();
    let mut sub = again
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    assert_eq!(text(&next(&mut sub).await), "x");
}

async fn next_or_end(sub: &mut Subscription) -> Option<Delivery> {
    tokio::time::timeout(Duration::from_secs(3), sub.next())
        .await
        .expect("an answer within 3s")
}

/// A damaged record in the middle of a log (a flipped bit, a bad sector):
/// every intact message after it is still delivered after a restart.
#[tokio::test]
async fn a_damaged_record_mid_log_loses_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = log_path(dir.path(), "orders");
    let mut starts = Vec::new();
    {
        let b = on_disk(dir.path()).await;
        orders_stream(&b).await;
        for i in 1..=8 {
            starts.push(fs::metadata(&path).unwrap().len() as usize);
            b.publish(Message::new("orders.a", format!("m{i}")))
                .await
                .unwrap();
        }
        b.close().await;
    }
    let mut bytes = fs::read(&path).unwrap();
    // Inside the body of m3: its checksum no longer matches.
    bytes[starts[2] + 12] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let b = on_disk(dir.path()).await;
    let expected = ["m1", "m2", "m4", "m5", "m6", "m7", "m8"];
    assert_eq!(drain_orders(&b).await, expected);
    b.close().await;
    drop(b);
    // The restart rewrote the log from what it recovered: nothing is lost twice.
    let b = on_disk(dir.path()).await;
    assert_eq!(drain_orders(&b).await, expected);
}

/// The log is rewritten without the stream's lock: publishes and acks made
/// while the new log is written complete, and all of them are in it.
#[tokio::test]
async fn publishing_goes_on_while_the_log_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let b = on_disk(dir.path()).await;
    orders_stream(&b).await;
    let s = b.stream_for_test("orders");
    let mut sub = b
        .subscribe_group("orders.>", "g", opts(5000, 5))
        .await
        .unwrap();
    publish_n(&b, "orders.a", 40).await;
    for _ in 0..40 {
        next(&mut sub).await.ack();
    }
    let gate = stream::CompactionGate::default();
    s.hold_compactions(gate.clone());
    let compaction = tokio::spawn({
        let s = s.clone();
        async move { s.compact().await }
    });
    gate.reached.notified().await;
    // The compaction has its snapshot and is writing the new log now.
    for i in 1..=10 {
        let publish = b.publish(Message::new("orders.a", format!("new{i}")));
        tokio::time::timeout(Duration::from_secs(5), publish)
            .await
            .expect("a publish while the log is rewritten completes")
            .unwrap();
    }
    for _ in 0..3 {
        next(&mut sub).await.ack();
    }
    gate.release.notify_one();
    assert!(compaction.await.unwrap().unwrap(), "the log was rewritten");
    assert_eq!(s.lock().compactions(), 1);
    assert_eq!(
        fs::metadata(log_path(dir.path(), "orders")).unwrap().len(),
        s.lock().store_size()
    );
    b.close().await;
    drop((b, sub, s));
    let b = on_disk(dir.path()).await;
    let want: Vec<String> = (4..=10).map(|i| format!("new{i}")).collect();
    assert_eq!(drain_orders(&b).await, want);
}

/// Under `SyncPolicy::Always` concurrent publishes share fsyncs (a group
/// commit); every one of them is acknowledged and in the log.
#[tokio::test]
async fn concurrent_publishes_under_sync_always_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            sync: SyncPolicy::Always,
            ..BrokerConfig::default()
        })
    };
    let b = open().await.unwrap();
    orders_stream(&b).await;
    let publishes = (0..200).map(|i| {
        let b = b.clone();
        tokio::spawn(async move { b.publish(Message::new("orders.a", format!("{i:03}"))).await })
    });
    for p in futures::future::join_all(publishes).await {
        p.unwrap().unwrap();
    }
    let s = b.stream_for_test("orders");
    assert!(
        s.synced() >= s.lock().written(),
        "a publish returned before its record was fsynced"
    );
    drop(s);
    // No close: what was acknowledged must already be in the file.
    drop(b);
    let b = open().await.unwrap();
    let mut got = drain_orders(&b).await;
    got.sort();
    let want: Vec<String> = (0..200).map(|i| format!("{i:03}")).collect();
    assert_eq!(got, want);
}

/// Job ids are remembered for the dedup window, not for the stream's whole
/// `max_age`; the id of a message still in the stream is kept past it.
#[tokio::test]
async fn dedup_ids_are_forgotten_after_the_dedup_window_unless_their_message_is_kept() {
    let b = EmbeddedBroker::open(BrokerConfig {
        dedup_window: Duration::from_millis(100),
        ..BrokerConfig::default()
    })
    .await
    .unwrap();
    b.ensure_stream(StreamConfig::new("ids", &["ids.*"]))
        .await
        .unwrap();
    let s = b.stream_for_test("ids");
    s.lock()
        .ensure_group("g", "ids.*", &GroupOptions::default())
        .unwrap();
    let with_id = |id: &str| {
        let mut m = Message::new("ids.a", "x");
        m.headers.insert(stream::MSG_ID.into(), id.into());
        m
    };
    let append = |m: Message| s.lock().append(m, true).unwrap();
    let done = append(with_id("done")).unwrap();
    assert!(append(with_id("queued")).is_some());
    let gi = s.lock().group_named("g").unwrap().0;
    assert!(s.lock().ack(gi, done));
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.lock().expire(stream::wall_ms());
    assert!(
        append(with_id("done")).is_some(),
        "an id past the window is still remembered"
    );
    assert!(
        append(with_id("queued")).is_none(),
        "the id of a message still queued was forgotten"
    );
}
