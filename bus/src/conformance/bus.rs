//! The cases of the [`Bus`] suite, one `pub async fn` each; the doc
//! of each says what an adapter must do to pass it.
//!
//! Every case publishes into its own stream (`conf_<uuid>`, capturing
//! `conf.<uuid>.>`), so plain subscriptions, durable groups and publishing work
//! on the same subjects for every adapter. Messages carry their identity in
//! the payload; duplicates are tolerated unless the adapter is exactly-once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::support::{
    Got, Reader, assert_no_duplicates, gather, maybe_next, msg, names, next, opts, publish,
    spawn_acking_reader, text,
};
use super::{BusCx, Verdict};
use crate::{Bus, BusError, Message, Subscription, header};

/// Ack wait of cases that do not test redelivery: never reached.
const LONG_MS: u64 = 30_000;
/// How long a case waits for messages it expects.
const DEADLINE_MS: u64 = 10_000;

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

async fn group(
    bus: &dyn Bus,
    subject: &str,
    group: &str,
    ack_wait: Duration,
    max_in_flight: usize,
) -> Subscription {
    bus.subscribe_group(subject, group, opts(ack_wait, max_in_flight))
        .await
        .unwrap_or_else(|e| panic!("subscribe_group({subject}, {group}) failed: {e}"))
}

async fn plain(bus: &dyn Bus, subject: &str) -> Subscription {
    bus.subscribe(subject)
        .await
        .unwrap_or_else(|e| panic!("subscribe({subject}) failed: {e}"))
}

fn reader(sub: Subscription, member: usize) -> (Reader, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (spawn_acking_reader(sub, member, Duration::ZERO, tx), rx)
}

/// The caps declared for the adapter are what [`Bus::features`] reports, and
/// a fresh bus passes [`Bus::check`].
pub async fn features_match_the_adapter(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    assert_eq!(
        bus.features(),
        cx.features(),
        "the caps declare other features than the adapter reports"
    );
    bus.check().await.expect("a fresh bus is ready");
    Verdict::Pass
}

/// Every message published to a subject reaches the group subscribed to it,
/// on that subject, with its payload.
pub async fn publish_subscribe(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("events");
    let sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 64).await;
    let (_r, mut rx) = reader(sub, 0);
    let want = names("m", cx.count(100, 20));
    for p in &want {
        publish(&*bus, msg(&subject, p)).await;
    }
    let got = gather(
        &mut rx,
        &set(&want),
        cx.ms(DEADLINE_MS),
        "publish_subscribe",
    )
    .await;
    assert!(
        got.iter().all(|g| g.subject == subject),
        "a delivery has another subject than its message"
    );
    let mut seen = BTreeSet::new();
    for g in &got {
        if seen.insert(g.payload.as_str()) {
            assert_eq!(
                g.attempt, 1,
                "the first delivery of {} is attempt 1",
                g.payload
            );
        }
    }
    if cx.caps().exactly_once {
        assert_no_duplicates(&got, "publish_subscribe");
    }
    Verdict::Pass
}

/// Plain subscriptions fan out: each subscriber gets every message published
/// after it subscribed, and none published before.
pub async fn plain_subscribers_fan_out(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("plain");
    publish(&*bus, msg(&subject, "before")).await;
    let (_ra, mut rxa) = reader(plain(&*bus, &subject).await, 0);
    let (_rb, mut rxb) = reader(plain(&*bus, &subject).await, 1);
    let want = set(&names("m", cx.count(50, 10)));
    for p in &want {
        publish(&*bus, msg(&subject, p)).await;
    }
    for (rx, who) in [(&mut rxa, "first"), (&mut rxb, "second")] {
        let got = gather(rx, &want, cx.ms(DEADLINE_MS), who).await;
        assert!(
            got.iter().all(|g| g.payload != "before"),
            "the {who} plain subscriber got a message published before it subscribed"
        );
    }
    Verdict::Pass
}

/// Several subjects at once, each with its own group and publisher: every
/// group gets all of its subject's messages and none of the others'.
pub async fn many_subjects(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subjects = cx.count(8, 3);
    let per = cx.count(25, 5);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for s in 0..subjects {
        let sub = group(
            &*bus,
            &cx.subject(&format!("s{s}")),
            &cx.group("g"),
            cx.ms(LONG_MS),
            64,
        )
        .await;
        readers.push(spawn_acking_reader(sub, s, Duration::ZERO, tx.clone()));
    }
    let mut want = BTreeSet::new();
    let mut publishers = Vec::new();
    for s in 0..subjects {
        let payloads = names(&format!("s{s}"), per);
        want.extend(payloads.iter().cloned());
        let bus = bus.clone();
        let subject = cx.subject(&format!("s{s}"));
        publishers.push(tokio::spawn(async move {
            for p in payloads {
                publish(&*bus, msg(&subject, &p)).await;
            }
        }));
    }
    for p in publishers {
        p.await.expect("a publisher task failed");
    }
    let got = gather(&mut rx, &want, cx.ms(DEADLINE_MS), "many_subjects").await;
    for g in &got {
        assert!(
            g.payload.starts_with(&format!("s{}-", g.member))
                && g.subject == cx.subject(&format!("s{}", g.member)),
            "the group of subject s{} got {:?} from {}",
            g.member,
            g.payload,
            g.subject
        );
    }
    if cx.caps().exactly_once {
        assert_no_duplicates(&got, "many_subjects");
    }
    Verdict::Pass
}

/// `*` matches one token and `>` one or more, for groups and plain subscribers.
pub async fn wildcard_subjects(cx: Arc<BusCx>) -> Verdict {
    if !cx.caps().wildcards {
        return Verdict::skip("adapter does not support wildcard subjects");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let (_rg, mut rx_created) = reader(
        group(
            &*bus,
            &cx.subject("*.created"),
            &cx.group("g"),
            cx.ms(LONG_MS),
            64,
        )
        .await,
        0,
    );
    let (_ra, mut rx_all) = reader(plain(&*bus, &cx.subject(">")).await, 1);
    let (_re, mut rx_eu) = reader(plain(&*bus, &cx.subject("eu.*")).await, 2);
    // The markers go last: a message that should not match would come before them.
    for (tail, payload) in [
        ("eu.created", "c-eu"),
        ("us.created", "c-us"),
        ("eu.paid", "p-eu"),
        ("eu.paid.late", "p-eu-late"),
        ("zz.created", "end"),
        ("eu.end", "end-eu"),
    ] {
        publish(&*bus, msg(&cx.subject(tail), payload)).await;
    }
    type Expect<'a> = (
        &'a mut mpsc::UnboundedReceiver<Got>,
        &'a str,
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: [Expect<'_>; 3] = [
        (
            &mut rx_created,
            "group on *.created",
            &["c-eu", "c-us", "end"],
            &["p-eu", "p-eu-late", "end-eu"],
        ),
        (
            &mut rx_all,
            "plain on >",
            &["c-eu", "c-us", "p-eu", "p-eu-late", "end", "end-eu"],
            &[],
        ),
        (
            &mut rx_eu,
            "plain on eu.*",
            &["c-eu", "p-eu", "end-eu"],
            &["c-us", "p-eu-late", "end"],
        ),
    ];
    for (rx, who, want, never) in cases {
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        let got = gather(rx, &want, cx.ms(DEADLINE_MS), who).await;
        for g in got {
            assert!(
                !never.contains(&g.payload.as_str()),
                "{who} got {:?} from {}",
                g.payload,
                g.subject
            );
        }
    }
    Verdict::Pass
}

/// Messages with the same key reach a group in publish order, also when the
/// group has two members working concurrently (first deliveries counted).
pub async fn order_per_key(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().ordered_per_key {
        return Verdict::skip("adapter does not order per key");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("ordered");
    let members = if cx.features().consumer_groups { 2 } else { 1 };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for m in 0..members {
        let sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
        readers.push(spawn_acking_reader(
            sub,
            m,
            Duration::from_millis(1),
            tx.clone(),
        ));
    }
    let keys = 3;
    let per_key = cx.count(50, 15);
    let mut want = BTreeSet::new();
    for j in 0..per_key {
        for k in 0..keys {
            let payload = format!("k{k}-{j:05}");
            want.insert(payload.clone());
            publish(&*bus, msg(&subject, &payload).with_key(format!("key-{k}"))).await;
        }
    }
    let got = gather(&mut rx, &want, cx.ms(DEADLINE_MS), "order_per_key").await;
    let mut seen = BTreeSet::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for g in got {
        if seen.insert(g.payload.clone()) {
            let key = g.key.clone().unwrap_or_else(|| {
                panic!("the key of {} did not travel with the message", g.payload)
            });
            order.entry(key).or_default().push(g.payload);
        }
    }
    for (key, payloads) in order {
        let mut sorted = payloads.clone();
        sorted.sort();
        assert_eq!(payloads, sorted, "messages of {key} out of publish order");
    }
    Verdict::Pass
}

/// Each group gets every message: groups are independent subscribers.
pub async fn fan_out_across_groups(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().consumer_groups {
        return Verdict::skip("adapter has no consumer groups");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("fan");
    let (_r1, mut rx1) = reader(
        group(&*bus, &subject, &cx.group("one"), cx.ms(LONG_MS), 64).await,
        0,
    );
    let (_r2, mut rx2) = reader(
        group(&*bus, &subject, &cx.group("two"), cx.ms(LONG_MS), 64).await,
        1,
    );
    let want = names("m", cx.count(50, 10));
    for p in &want {
        publish(&*bus, msg(&subject, p)).await;
    }
    for (rx, who) in [(&mut rx1, "group one"), (&mut rx2, "group two")] {
        let got = gather(rx, &set(&want), cx.ms(DEADLINE_MS), who).await;
        if cx.caps().exactly_once {
            assert_no_duplicates(&got, who);
        }
    }
    Verdict::Pass
}

/// Two members of a group share its messages: both get work, together they
/// get every message.
pub async fn balance_within_group(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().consumer_groups {
        return Verdict::skip("adapter has no consumer groups");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("balanced");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for m in 0..2 {
        let sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 2).await;
        readers.push(spawn_acking_reader(
            sub,
            m,
            Duration::from_millis(2),
            tx.clone(),
        ));
    }
    // Batches until both members got something: brokers that assign members
    // lazily (rebalancing) get the time they need, bounded.
    let batch = 10;
    let max_batches = 30;
    let mut got = Vec::new();
    let mut published = BTreeSet::new();
    for b in 0..max_batches {
        let payloads = names(&format!("b{b}"), batch);
        for (i, p) in payloads.iter().enumerate() {
            // Distinct keys: partitioned brokers spread them over partitions.
            publish(&*bus, msg(&subject, p).with_key(format!("key-{b}-{i}"))).await;
        }
        published.extend(payloads.iter().cloned());
        got.extend(gather(&mut rx, &set(&payloads), cx.ms(DEADLINE_MS), "balance").await);
        let members: BTreeSet<usize> = got.iter().map(|g| g.member).collect();
        if members.len() == 2 {
            break;
        }
    }
    let members: BTreeSet<usize> = got.iter().map(|g| g.member).collect();
    assert_eq!(
        members.len(),
        2,
        "one member of the group got all of {} messages",
        published.len()
    );
    if cx.caps().exactly_once {
        assert_no_duplicates(&got, "balance_within_group");
    }
    Verdict::Pass
}

/// A delivery that is neither acked nor nacked comes back after the group's
/// ack wait (not before), as attempt 2; once acked it does not come back.
pub async fn no_ack_redelivers(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("noack");
    let ack_wait = cx.ms(300);
    let mut sub = group(&*bus, &subject, &cx.group("g"), ack_wait, 8).await;
    let t0 = Instant::now();
    publish(&*bus, msg(&subject, "m")).await;
    let first = next(&mut sub, cx.ms(DEADLINE_MS), "the first delivery").await;
    assert_eq!((text(&first).as_str(), first.attempt), ("m", 1));
    let again = next(
        &mut sub,
        ack_wait + cx.ms(DEADLINE_MS),
        "the redelivery of an un-acked message",
    )
    .await;
    assert!(
        t0.elapsed() >= ack_wait,
        "redelivered after {:?}, before the ack wait of {ack_wait:?}",
        t0.elapsed()
    );
    assert_eq!((text(&again).as_str(), again.attempt), ("m", 2));
    assert!(again.ack());
    drop(first);
    if let Some(d) = maybe_next(&mut sub, ack_wait * 3).await {
        panic!("an acked message came back: {d:?}");
    }
    Verdict::Pass
}

/// `nack(0)` hands the message out again at once, as attempt 2; `ack` and
/// `nack` of one delivery are idempotent and exclusive.
pub async fn nack_redelivers(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("nack");
    let mut sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    publish(&*bus, msg(&subject, "m")).await;
    let first = next(&mut sub, cx.ms(DEADLINE_MS), "the first delivery").await;
    assert!(first.nack(Duration::ZERO));
    assert!(first.nack(Duration::ZERO), "nack is idempotent");
    assert!(!first.ack(), "ack after nack must report the conflict");
    let again = next(&mut sub, cx.ms(DEADLINE_MS), "the redelivery after nack").await;
    assert_eq!((text(&again).as_str(), again.attempt), ("m", 2));
    assert!(again.ack());
    assert!(again.ack(), "ack is idempotent");
    assert!(
        !again.nack(Duration::ZERO),
        "nack after ack must report the conflict"
    );
    if let Some(d) = maybe_next(&mut sub, cx.ms(300)).await {
        panic!("an acked message came back: {d:?}");
    }
    Verdict::Pass
}

/// A message is delivered at most `max_deliveries` times: after that many
/// deliveries without an ack it goes to the dead letters, not to the group.
pub async fn max_deliveries_ends_redelivery(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("poison");
    let options = crate::GroupOptions {
        ack_wait: cx.ms(LONG_MS),
        max_deliveries: 2,
        max_in_flight: 8,
    };
    let mut sub = bus
        .subscribe_group(&subject, &cx.group("g"), options)
        .await
        .unwrap_or_else(|e| panic!("subscribe_group failed: {e}"));
    publish(&*bus, msg(&subject, "poison")).await;
    for attempt in 1..=2 {
        let d = next(
            &mut sub,
            cx.ms(DEADLINE_MS),
            "a delivery of the poison message",
        )
        .await;
        assert_eq!((text(&d).as_str(), d.attempt), ("poison", attempt));
        d.nack(Duration::ZERO);
    }
    publish(&*bus, msg(&subject, "healthy")).await;
    let d = next(&mut sub, cx.ms(DEADLINE_MS), "the next message").await;
    assert_eq!(
        text(&d),
        "healthy",
        "delivered a third time with max_deliveries 2"
    );
    d.ack();
    if let Some(d) = maybe_next(&mut sub, cx.ms(300)).await {
        panic!("delivered after max_deliveries: {d:?}");
    }
    Verdict::Pass
}

/// A message nacked with a delay is redelivered no sooner than the delay, and
/// other messages still flow in the meantime.
pub async fn nack_with_delay(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().redelivery_delay {
        return Verdict::skip("adapter cannot delay a redelivery");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("delay");
    let delay = cx.ms(500);
    let mut sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    publish(&*bus, msg(&subject, "delayed")).await;
    let first = next(&mut sub, cx.ms(DEADLINE_MS), "the first delivery").await;
    let nacked_at = Instant::now();
    assert!(first.nack(delay));
    publish(&*bus, msg(&subject, "other")).await;
    let mut other_seen = false;
    loop {
        let d = next(
            &mut sub,
            delay + cx.ms(DEADLINE_MS),
            "the delayed redelivery",
        )
        .await;
        match text(&d).as_str() {
            "other" => other_seen = true,
            "delayed" => {
                let after = nacked_at.elapsed();
                assert!(
                    after >= delay,
                    "redelivered after {after:?}, before the delay of {delay:?}"
                );
                assert_eq!(d.attempt, 2);
                d.ack();
                break;
            }
            p => panic!("unexpected message {p:?}"),
        }
        d.ack();
    }
    if !other_seen {
        let d = next(&mut sub, cx.ms(DEADLINE_MS), "the other message").await;
        assert_eq!(text(&d), "other");
        d.ack();
    }
    Verdict::Pass
}

/// Acking deliveries after their subscription was closed neither panics nor
/// loses a message: the next member of the group gets every message that was
/// not acked (those acked after the close may or may not come back).
pub async fn ack_after_subscription_closed(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("closed");
    let ack_wait = cx.ms(1000);
    let all = names("m", cx.count(20, 10));
    let mut first = group(&*bus, &subject, &cx.group("g"), ack_wait, 5).await;
    for p in &all {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut first, cx.ms(DEADLINE_MS), "a delivery to hold").await);
    }
    first.close();
    let mut acked = BTreeSet::new();
    for d in held.drain(..3) {
        // The result is the adapter's business; only a panic or a loss fails.
        let _ = d.ack();
        acked.insert(text(&d));
    }
    drop(held);
    let (_r, mut rx) = reader(
        group(&*bus, &subject, &cx.group("g"), ack_wait, 64).await,
        1,
    );
    let want: BTreeSet<String> = set(&all).difference(&acked).cloned().collect();
    gather(
        &mut rx,
        &want,
        ack_wait + cx.ms(DEADLINE_MS),
        "after the subscription closed",
    )
    .await;
    Verdict::Pass
}

/// A member that closes with deliveries in flight gives them back: another
/// member of the group gets every message, including those.
pub async fn close_with_deliveries_in_flight(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("inflight");
    let ack_wait = cx.ms(1000);
    let all = names("m", cx.count(20, 10));
    let mut leaving = group(&*bus, &subject, &cx.group("g"), ack_wait, 5).await;
    for p in &all {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(next(&mut leaving, cx.ms(DEADLINE_MS), "a delivery to hold").await);
    }
    let (_r, mut rx) = reader(
        group(&*bus, &subject, &cx.group("g"), ack_wait, 64).await,
        1,
    );
    leaving.close();
    gather(
        &mut rx,
        &set(&all),
        ack_wait + cx.ms(DEADLINE_MS),
        "after a member closed with deliveries in flight",
    )
    .await;
    // Undecided until the end: only the close could have given them back.
    drop(held);
    Verdict::Pass
}

/// A subscriber that restarts (new client; the broker restarts too where the
/// factory can do that) resumes after its last ack: every un-acked message
/// comes, no acked one comes back.
pub async fn durable_resume_after_restart(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().durable {
        return Verdict::skip("adapter is not durable");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("resume");
    let all = names("m", cx.count(20, 10));
    let mut sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 1).await;
    for p in &all {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut acked = BTreeSet::new();
    for _ in 0..all.len() / 2 {
        let d = next(&mut sub, cx.ms(DEADLINE_MS), "a delivery to ack").await;
        assert!(d.ack());
        acked.insert(text(&d));
    }
    sub.close();
    let bus = if cx.caps().broker_restart && cx.caps().clients_survive_restart {
        cx.restart_broker().await;
        bus
    } else {
        drop(bus);
        if cx.caps().broker_restart {
            cx.restart_broker().await;
        }
        cx.connect().await
    };
    cx.ensure_stream(&*bus).await;
    let (_r, mut rx) = reader(
        group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 64).await,
        1,
    );
    let want: BTreeSet<String> = set(&all).difference(&acked).cloned().collect();
    let mut got = gather(&mut rx, &want, cx.ms(DEADLINE_MS), "after the restart").await;
    while let Ok(Some(g)) = tokio::time::timeout(cx.ms(200), rx.recv()).await {
        got.push(g);
    }
    let back: Vec<&str> = got
        .iter()
        .map(|g| g.payload.as_str())
        .filter(|p| acked.contains(*p))
        .collect();
    assert!(back.is_empty(), "acked messages came back: {back:?}");
    Verdict::Pass
}

/// A group subscribing for the first time gets the stream's messages
/// published before it existed; a plain subscriber does not.
pub async fn messages_before_group_first_subscribes(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("early");
    let early = names("early", cx.count(10, 5));
    for p in &early {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut late_plain = plain(&*bus, &subject).await;
    let (_r, mut rx) = reader(
        group(&*bus, &subject, &cx.group("late"), cx.ms(LONG_MS), 64).await,
        0,
    );
    gather(&mut rx, &set(&early), cx.ms(DEADLINE_MS), "the new group").await;
    publish(&*bus, msg(&subject, "marker")).await;
    let d = next(&mut late_plain, cx.ms(DEADLINE_MS), "the marker").await;
    assert_eq!(
        text(&d),
        "marker",
        "a plain subscriber got a message published before it subscribed"
    );
    Verdict::Pass
}

/// `ensure_stream` again (also from another client) keeps the stream's messages.
pub async fn ensure_stream_is_idempotent(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("kept");
    let kept = names("m", 3);
    for p in &kept {
        publish(&*bus, msg(&subject, p)).await;
    }
    cx.ensure_stream(&*bus).await;
    let other = cx.connect().await;
    cx.ensure_stream(&*other).await;
    let (_r, mut rx) = reader(
        group(&*other, &subject, &cx.group("g"), cx.ms(LONG_MS), 64).await,
        0,
    );
    gather(
        &mut rx,
        &set(&kept),
        cx.ms(DEADLINE_MS),
        "after ensure_stream",
    )
    .await;
    Verdict::Pass
}

/// Headers and the key travel with the message, to groups and plain
/// subscribers: the contract's headers, Unicode and empty values.
pub async fn headers_round_trip(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().headers {
        return Verdict::skip("adapter does not carry headers");
    }
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("headers");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    let sent = Message::new(&subject, "with headers")
        .with_key("order-42")
        .with_header(header::EVENT_ID, uuid::Uuid::new_v4().to_string())
        .with_header(header::EVENT_TYPE, "new_order")
        .with_header(
            header::TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .with_header("x-unicode", "grüße ✓ 注文")
        .with_header("x-empty", "");
    publish(&*bus, sent.clone()).await;
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        let got = &d.message;
        assert_eq!(got.subject, sent.subject, "{who}: subject");
        assert_eq!(got.payload, sent.payload, "{who}: payload");
        assert_eq!(got.key, sent.key, "{who}: key");
        for (name, value) in &sent.headers {
            assert_eq!(
                got.header(name),
                Some(value.as_str()),
                "{who}: header {name}"
            );
        }
        d.ack();
    }
    Verdict::Pass
}

fn patterned(size: usize) -> bytes::Bytes {
    (0..size)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// A payload 1 KiB under [`Features::max_payload`](crate::Features) arrives intact.
pub async fn payload_near_limit(cx: Arc<BusCx>) -> Verdict {
    let max = cx.features().max_payload;
    let size = max.saturating_sub(1024).max(1);
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("big");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    let payload = patterned(size);
    bus.publish(Message::new(&subject, payload.clone()))
        .await
        .unwrap_or_else(|e| panic!("a payload of {size} bytes (max {max}) was refused: {e}"));
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        assert!(
            d.message.payload == payload,
            "{who}: the payload of {size} bytes changed on the way ({} bytes arrived)",
            d.message.payload.len()
        );
        d.ack();
    }
    Verdict::Pass
}

/// A payload over the limit fails with [`BusError::PayloadTooLarge`], is not
/// delivered, and the bus goes on working.
pub async fn payload_over_limit(cx: Arc<BusCx>) -> Verdict {
    let max = cx.features().max_payload;
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("toobig");
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    let mut pln = plain(&*bus, &subject).await;
    match bus
        .publish(Message::new(&subject, patterned(max + 1)))
        .await
    {
        Err(BusError::PayloadTooLarge { size, max: limit }) => {
            assert!(
                size > limit,
                "PayloadTooLarge {{ size: {size}, max: {limit} }}"
            );
            assert_eq!(
                limit, max,
                "the error names another limit than the features"
            );
        }
        other => panic!("a payload of {} bytes (max {max}) gave {other:?}", max + 1),
    }
    publish(&*bus, msg(&subject, "after")).await;
    for (sub, who) in [(&mut grp, "group"), (&mut pln, "plain subscriber")] {
        let d = next(sub, cx.ms(DEADLINE_MS), who).await;
        assert_eq!(text(&d), "after", "{who} got the refused payload");
        d.ack();
    }
    Verdict::Pass
}

/// Four publishers and several members, each on its own client, at once:
/// every message is received.
pub async fn concurrent_publishers_and_subscribers(cx: Arc<BusCx>) -> Verdict {
    let setup = cx.connect().await;
    cx.ensure_stream(&*setup).await;
    let subject = cx.subject("busy");
    let members = if cx.features().consumer_groups { 3 } else { 1 };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut readers = Vec::new();
    for m in 0..members {
        let bus = cx.connect().await;
        let sub = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 64).await;
        readers.push(spawn_acking_reader(sub, m, Duration::ZERO, tx.clone()));
    }
    let per = cx.count(250, 50);
    let mut want = BTreeSet::new();
    let mut publishers = Vec::new();
    for p in 0..4 {
        let payloads = names(&format!("p{p}"), per);
        want.extend(payloads.iter().cloned());
        let bus = cx.connect().await;
        let subject = subject.clone();
        publishers.push(tokio::spawn(async move {
            for (i, payload) in payloads.iter().enumerate() {
                let m = msg(&subject, payload).with_key(format!("key-{}", i % 16));
                publish(&*bus, m).await;
            }
        }));
    }
    for p in publishers {
        p.await.expect("a publisher task failed");
    }
    let got = gather(&mut rx, &want, cx.ms(3 * DEADLINE_MS), "concurrent").await;
    if cx.caps().exactly_once {
        assert_no_duplicates(&got, "concurrent_publishers_and_subscribers");
    }
    Verdict::Pass
}

/// Publishing until the broker takes it again, for brokers that come back
/// asynchronously; only [`BusError::Unavailable`] is worth a retry.
async fn publish_after_restart(cx: &BusCx, bus: &dyn Bus, m: Message) {
    let deadline = Instant::now() + cx.ms(DEADLINE_MS);
    loop {
        match bus.publish(m.clone()).await {
            Ok(()) => return,
            Err(BusError::Unavailable(why)) if Instant::now() < deadline => {
                tracing::debug!(%why, "broker not back yet");
                tokio::time::sleep(cx.ms(100)).await;
            }
            Err(e) => panic!("publish after the broker restart failed: {e}"),
        }
    }
}

/// The broker restarts: clients reconnect (or connect anew where the caps say
/// handles do not survive), publishing and subscribing work again, and for a
/// durable adapter no un-acked message of before the restart is lost.
pub async fn broker_restart(cx: Arc<BusCx>) -> Verdict {
    if !cx.caps().broker_restart {
        return Verdict::skip("the factory cannot restart the broker");
    }
    let survive = cx.caps().clients_survive_restart;
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("restart");
    let ack_wait = cx.ms(1000);
    let before = names("before", 10);
    for p in &before {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut sub = group(&*bus, &subject, &cx.group("g"), ack_wait, 8).await;
    let mut acked = BTreeSet::new();
    for _ in 0..3 {
        let d = next(
            &mut sub,
            cx.ms(DEADLINE_MS),
            "a delivery before the restart",
        )
        .await;
        d.ack();
        acked.insert(text(&d));
    }
    let (bus, sub) = if survive {
        cx.restart_broker().await;
        (bus, Some(sub))
    } else {
        drop(sub);
        drop(bus);
        cx.restart_broker().await;
        (cx.connect().await, None)
    };
    let after = names("after", 10);
    for p in &after {
        publish_after_restart(&cx, &*bus, msg(&subject, p)).await;
    }
    let sub = match sub {
        Some(sub) => sub,
        None => {
            cx.ensure_stream(&*bus).await;
            group(&*bus, &subject, &cx.group("g"), ack_wait, 64).await
        }
    };
    let (_r, mut rx) = reader(sub, 0);
    let mut want = set(&after);
    if cx.features().durable {
        want.extend(set(&before).difference(&acked).cloned());
    }
    gather(
        &mut rx,
        &want,
        ack_wait + cx.ms(DEADLINE_MS),
        "after the broker restart",
    )
    .await;
    bus.check()
        .await
        .expect("the bus is ready after the restart");
    Verdict::Pass
}

/// `close` ends every subscription (after what they already hold), later
/// calls fail with [`BusError::Closed`], a held delivery can still be acked
/// without a panic, and closing twice is harmless.
pub async fn close_ends_subscriptions(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("close");
    let mut pln = plain(&*bus, &subject).await;
    let mut grp = group(&*bus, &subject, &cx.group("g"), cx.ms(LONG_MS), 8).await;
    publish(&*bus, msg(&subject, "m")).await;
    let held = next(&mut grp, cx.ms(DEADLINE_MS), "the delivery to hold").await;
    bus.close().await;
    for (sub, who) in [
        (&mut pln, "plain subscription"),
        (&mut grp, "group subscription"),
    ] {
        let drained = tokio::time::timeout(cx.ms(DEADLINE_MS), async {
            let mut left = 0usize;
            while sub.next().await.is_some() {
                left += 1;
                assert!(left <= 10, "the {who} keeps delivering after close");
            }
        })
        .await;
        assert!(drained.is_ok(), "the {who} did not end after close");
    }
    let _ = held.ack();
    assert!(
        matches!(
            bus.publish(msg(&subject, "late")).await,
            Err(BusError::Closed)
        ),
        "publish after close must fail with Closed"
    );
    assert!(
        matches!(bus.subscribe(&subject).await, Err(BusError::Closed)),
        "subscribe after close must fail with Closed"
    );
    assert!(
        bus.check().await.is_err(),
        "check after close must report the bus is not ready"
    );
    bus.close().await;
    Verdict::Pass
}
