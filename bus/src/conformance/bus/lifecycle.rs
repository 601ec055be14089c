//! Streams, restarts and close: resuming after a restart, `ensure_stream`
//! again, the broker going away and coming back, closing the bus.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::time::Instant;

use super::{DEADLINE_MS, LONG_MS, group, plain, reader, set};
use crate::conformance::support::{gather, msg, names, next, publish, text};
use crate::conformance::{BusCx, Verdict};
use crate::{Bus, BusError, Message};

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

/// The broker's process is killed (SIGKILL) with a group's deliveries acked,
/// in flight and not yet delivered, and starts again on the same data: on a
/// durable adapter a process crash loses nothing acknowledged. Every message
/// that was not acked comes (those in flight at the crash as a redelivery,
/// attempt 2 or later), no acked one comes back, and publishing works again.
pub async fn durable_resume_after_crash(cx: Arc<BusCx>) -> Verdict {
    if !cx.features().durable {
        return Verdict::skip("adapter is not durable");
    }
    if !cx.caps().broker_crash {
        return Verdict::skip("the factory cannot crash the broker");
    }
    let survive = cx.caps().clients_survive_restart;
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("crash");
    let ack_wait = cx.ms(2000);
    let all = names("m", cx.count(20, 10));
    for p in &all {
        publish(&*bus, msg(&subject, p)).await;
    }
    let mut sub = group(&*bus, &subject, &cx.group("g"), ack_wait, 4).await;
    let mut acked = BTreeSet::new();
    for _ in 0..all.len() / 2 {
        let d = next(&mut sub, cx.ms(DEADLINE_MS), "a delivery to ack").await;
        assert!(d.ack());
        acked.insert(text(&d));
    }
    // Delivered, never settled: in flight when the broker dies.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(next(&mut sub, cx.ms(DEADLINE_MS), "a delivery to hold").await);
    }
    let in_flight: BTreeSet<String> = held.iter().map(text).collect();
    let (bus, sub) = if survive {
        cx.crash_broker().await;
        (bus, Some(sub))
    } else {
        drop(sub);
        drop(bus);
        cx.crash_broker().await;
        let bus = cx.connect().await;
        cx.ensure_stream(&*bus).await;
        (bus, None)
    };
    drop(held);
    publish_after_restart(&cx, &*bus, msg(&subject, "after")).await;
    let sub = match sub {
        Some(sub) => sub,
        None => group(&*bus, &subject, &cx.group("g"), ack_wait, 64).await,
    };
    let (_r, mut rx) = reader(sub, 0);
    let mut want: BTreeSet<String> = set(&all).difference(&acked).cloned().collect();
    want.insert("after".to_string());
    let mut got = gather(
        &mut rx,
        &want,
        ack_wait + cx.ms(DEADLINE_MS),
        "after the broker crashed",
    )
    .await;
    while let Ok(Some(g)) = tokio::time::timeout(cx.ms(300), rx.recv()).await {
        got.push(g);
    }
    let back: Vec<&str> = got
        .iter()
        .map(|g| g.payload.as_str())
        .filter(|p| acked.contains(*p))
        .collect();
    assert!(
        back.is_empty(),
        "acked messages came back after the crash: {back:?}"
    );
    for g in got.iter().filter(|g| in_flight.contains(&g.payload)) {
        assert!(
            g.attempt >= 2,
            "{} was in flight at the crash but came back as attempt {}",
            g.payload,
            g.attempt
        );
    }
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
