//! Publishing and subscribing: plain and group subscriptions, many subjects,
//! wildcards, and what the adapter declares.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{DEADLINE_MS, LONG_MS, group, plain, reader, set};
use crate::conformance::support::{
    Got, assert_no_duplicates, gather, msg, names, publish, spawn_acking_reader,
};
use crate::conformance::{BusCx, Verdict};

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
