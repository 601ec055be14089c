//! Acks, nacks and redelivery: the ack wait, `max_deliveries`, delays, and
//! deliveries whose subscription went away.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{DEADLINE_MS, LONG_MS, group, reader, set};
use crate::conformance::support::{gather, maybe_next, msg, names, next, publish, text};
use crate::conformance::{BusCx, Verdict};

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
/// Where the adapter keeps dead letters, the list shows it with its group,
/// subject and delivery count, and a replay gives it back to the group as a
/// first delivery and takes it off the list.
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
    if !cx.caps().dead_letters {
        return Verdict::Pass;
    }
    let stream = cx.stream_config();
    let letter = dead_letter(&cx, &*bus, "poison").await;
    assert_eq!(letter.group, cx.group("g"), "the dead letter's group");
    assert_eq!(letter.message.subject, subject, "the dead letter's subject");
    assert_eq!(letter.deliveries, 2, "the dead letter's delivery count");
    assert!(!letter.reason.is_empty(), "a dead letter says why");
    assert!(
        bus.replay_dead(&stream, &letter.id)
            .await
            .unwrap_or_else(|e| panic!("replay_dead failed: {e}")),
        "replay_dead did not find the dead letter it listed"
    );
    let d = next(&mut sub, cx.ms(DEADLINE_MS), "the replayed dead letter").await;
    assert_eq!(
        (text(&d).as_str(), d.attempt),
        ("poison", 1),
        "a replayed dead letter comes back as a first delivery"
    );
    d.ack();
    let left = bus
        .dead_letters(&stream, 100)
        .await
        .unwrap_or_else(|e| panic!("dead_letters failed: {e}"));
    assert!(
        left.iter().all(|l| l.id != letter.id),
        "a replayed dead letter is still listed: {left:?}"
    );
    Verdict::Pass
}

/// Waits for the dead letter whose payload is `payload` (adapters may copy
/// it to the dead letters after the nack returned).
async fn dead_letter(cx: &BusCx, bus: &dyn crate::Bus, payload: &str) -> crate::DeadLetter {
    let deadline = Instant::now() + cx.ms(DEADLINE_MS);
    loop {
        let listed = bus
            .dead_letters(&cx.stream_config(), 100)
            .await
            .unwrap_or_else(|e| panic!("dead_letters failed: {e}"));
        if let Some(l) = listed.into_iter().find(|l| l.message.payload == payload) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{payload:?} is not in the dead letters after its last delivery was nacked"
        );
        tokio::time::sleep(cx.ms(100)).await;
    }
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

/// A member that closes with deliveries in flight gives them back at once:
/// another member of the group gets every message, including those, well
/// before the ack wait would have returned them.
pub async fn close_with_deliveries_in_flight(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("inflight");
    // Longer than the wait below: only a give-back on close passes.
    let ack_wait = cx.ms(LONG_MS);
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
        cx.ms(DEADLINE_MS),
        "after a member closed with deliveries in flight",
    )
    .await;
    // Undecided until the end: only the close could have given them back.
    drop(held);
    Verdict::Pass
}
