//! The task behind a push subscription of a group.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::StreamShared;
use super::acker::GroupAcker;
use crate::{Delivery, GroupOptions};

/// Feeds one push subscription of a group: takes what the member may have in
/// flight, sends it, and sleeps until something changes or a deadline passes.
pub(crate) async fn pump(
    stream: Arc<StreamShared>,
    group: usize,
    member: u64,
    options: GroupOptions,
    tx: mpsc::Sender<Delivery>,
) {
    let notify = stream.lock().group_notify(group);
    let max_in_flight = options.max_in_flight.max(1);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        let (batch, deadline) = {
            let mut s = stream.lock();
            // Registered under the lock: a change made after we looked wakes us.
            notified.as_mut().enable();
            if s.is_closed() {
                return;
            }
            let now = Instant::now();
            s.tick(group, now);
            let room = max_in_flight.saturating_sub(s.in_flight_of(group, member));
            let batch = s.take(group, member, room, now + options.ack_wait);
            (batch, s.next_deadline(group))
        };
        let got_some = !batch.is_empty();
        for t in batch {
            let acker = Arc::new(GroupAcker {
                stream: Arc::downgrade(&stream),
                group,
                seq: t.seq,
                attempt: t.attempt,
                ack_wait: options.ack_wait,
            });
            // The channel holds max_in_flight and everything in it is in flight,
            // so it only fails once the subscriber is gone (the guard then gives
            // the messages back).
            if tx
                .try_send(Delivery::with_acker(t.msg, t.attempt, acker))
                .is_err()
            {
                return;
            }
        }
        if got_some {
            continue;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = sleep => {}
            _ = tx.closed() => return,
        }
    }
}
