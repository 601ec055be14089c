//! Durable groups: order per key, fan-out across groups, balance within a
//! group, messages from before a group existed, many clients at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{DEADLINE_MS, LONG_MS, group, plain, reader, set};
use crate::conformance::support::{
    assert_no_duplicates, gather, msg, names, next, publish, spawn_acking_reader, text,
};
use crate::conformance::{BusCx, Verdict};

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
