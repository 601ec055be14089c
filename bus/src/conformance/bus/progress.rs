//! `in_progress`: a receiver that holds a delivery keeps it without spending
//! a delivery.

use std::sync::Arc;

use super::{DEADLINE_MS, group};
use crate::conformance::support::{maybe_next, msg, next, publish, text};
use crate::conformance::{BusCx, Verdict};

/// A delivery kept alive with `in_progress` more often than the ack wait is
/// not redelivered while it is held, for several ack waits, and once acked it
/// was delivered once: holding a message (while a dependency is down) spends
/// none of its `max_deliveries`.
pub async fn in_progress_holds_a_delivery(cx: Arc<BusCx>) -> Verdict {
    let bus = cx.connect().await;
    cx.ensure_stream(&*bus).await;
    let subject = cx.subject("wpi");
    let ack_wait = cx.ms(600);
    let mut sub = group(&*bus, &subject, &cx.group("g"), ack_wait, 8).await;
    publish(&*bus, msg(&subject, "m")).await;
    let held = next(&mut sub, cx.ms(DEADLINE_MS), "the first delivery").await;
    assert_eq!((text(&held).as_str(), held.attempt), ("m", 1));
    // Five ack waits, a keep-alive every sixth of one.
    for _ in 0..30 {
        assert!(held.in_progress(), "an open delivery accepts in_progress");
        if let Some(d) = maybe_next(&mut sub, ack_wait / 6).await {
            panic!(
                "redelivered (attempt {}) while held with in_progress: it did not restart the ack wait",
                d.attempt
            );
        }
    }
    assert!(held.ack());
    assert!(!held.in_progress(), "in_progress after the ack reports it");
    if let Some(d) = maybe_next(&mut sub, ack_wait * 2).await {
        panic!("an acked message came back: attempt {}", d.attempt);
    }
    Verdict::Pass
}
