//! Plain pub/sub: in-process fan-out with no storage, like NATS core.
//!
//! Every plain subscriber of a matching subject gets each message; of each queue
//! group one member gets it, chosen round robin. Sends never wait: a subscriber
//! that cannot take a message (its channel is full, its client is a slow
//! consumer) loses it, so one stuck reader cannot stall publishers or others.
//!
//! A subscriber is a bounded channel ([`Subscription`], in process) or a
//! [`Sink`]: the wire listener's connections take messages straight into
//! their outbound buffer from the publisher's task, with no task in between.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::sublist::Sublist;
use crate::{BusError, Delivery, Message, Subscription};

/// Messages a plain subscriber may have waiting before it counts as slow.
pub(crate) const SUB_PENDING: usize = 8192;

/// What a [`Sink`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Taken,
    /// Taken, and the subscription wants no more (its max is reached): the
    /// fan-out removes it.
    TakenLast,
    /// Not taken: the subscriber is behind (counted as a slow-consumer drop).
    Full,
    /// Not taken: the subscriber is gone or done.
    Closed,
}

/// A subscriber that takes messages synchronously, on the publisher's task.
pub(crate) trait Sink: Send + Sync {
    /// Takes `msg` without waiting, but need not send it on yet ...
    fn offer(&self, msg: &Message) -> Offer;
    /// ... until this: get what was taken moving; `inline` lets it do the
    /// sending (a socket write) on the caller's task, otherwise it hands the
    /// sending to its own task.
    fn flush(&self, inline: bool);
}

/// Sinks that took messages and still need [`Sink::flush`]: a publisher
/// handling many messages in a row flushes each sink once at the end.
#[derive(Default)]
pub(crate) struct Pending {
    sinks: Vec<Arc<dyn Sink>>,
}

impl Pending {
    fn add(&mut self, sink: &Arc<dyn Sink>) {
        // Usually one or two sinks: a scan beats hashing.
        if !self.sinks.iter().any(|s| Arc::ptr_eq(s, sink)) {
            self.sinks.push(sink.clone());
        }
    }

    pub(crate) fn flush(&mut self) {
        for s in self.sinks.drain(..) {
            s.flush(true);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.flush();
    }
}

enum Target {
    Channel(mpsc::Sender<Delivery>),
    Sink(Arc<dyn Sink>),
}

struct FanoutSub {
    target: Target,
    subject: String,
    queue: Option<String>,
    id: u64,
    dropped: AtomicU64,
}

pub(crate) struct Fanout {
    subs: Mutex<Sublist<Arc<FanoutSub>>>,
    next_id: AtomicU64,
    next_member: AtomicUsize,
    slow_drops: AtomicU64,
}

/// Removes a subscription from the fan-out when dropped.
pub(crate) struct FanoutGuard {
    fanout: Weak<Fanout>,
    subject: String,
    queue: Option<String>,
    id: u64,
}

impl Fanout {
    pub(crate) fn new() -> Self {
        Self {
            subs: Mutex::new(Sublist::new()),
            next_id: AtomicU64::new(1),
            next_member: AtomicUsize::new(0),
            slow_drops: AtomicU64::new(0),
        }
    }

    /// Subscribes to `subject`; with `queue`, as a member of that queue group.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        subject: &str,
        queue: Option<&str>,
        capacity: usize,
    ) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let guard = self.add(subject, queue, Target::Channel(tx))?;
        Ok(Subscription::new(rx, Some(Box::new(guard))))
    }

    /// Subscribes `sink`; it is offered every message until the guard drops
    /// or it answers [`Offer::TakenLast`].
    pub(crate) fn subscribe_sink(
        self: &Arc<Self>,
        subject: &str,
        queue: Option<&str>,
        sink: Arc<dyn Sink>,
    ) -> Result<FanoutGuard, BusError> {
        self.add(subject, queue, Target::Sink(sink))
    }

    fn add(
        self: &Arc<Self>,
        subject: &str,
        queue: Option<&str>,
        target: Target,
    ) -> Result<FanoutGuard, BusError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(FanoutSub {
            target,
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
            id,
            dropped: AtomicU64::new(0),
        });
        self.subs
            .lock()
            .expect("fanout sublist lock poisoned")
            .insert(subject, queue, id, sub)
            .map_err(|why| BusError::InvalidSubject(subject.to_string(), why))?;
        Ok(FanoutGuard {
            fanout: Arc::downgrade(self),
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
            id,
        })
    }

    /// Offers `msg` to every matching subscriber; returns how many took it
    /// (a queue group counts once), which the wire listener needs for the
    /// no-responders status of requests. Sinks that took it are flushed at
    /// once, or added to `pending` for the caller to flush later.
    pub(crate) fn publish(&self, msg: Message, mut pending: Option<&mut Pending>) -> usize {
        let mut taken = 0;
        let result = self
            .subs
            .lock()
            .expect("fanout sublist lock poisoned")
            .match_subject(&msg.subject);
        // Channels get copies, except the last offer: it may have the message.
        let mut left = result.psubs.len() + result.qsubs.len();
        let mut msg = Some(msg);
        for sub in &result.psubs {
            left -= 1;
            match self.offer(sub, &mut msg, left == 0, pending.as_deref_mut()) {
                Offer::Taken | Offer::TakenLast => taken += 1,
                Offer::Full => self.slow(sub),
                Offer::Closed => {}
            }
        }
        for (_, members) in &result.qsubs {
            left -= 1;
            let start = self.next_member.fetch_add(1, Ordering::Relaxed);
            // A full member should not lose the message while another has room.
            let mut delivered = false;
            for i in 0..members.len() {
                let sub = &members[(start + i) % members.len()];
                if matches!(
                    self.offer(sub, &mut msg, left == 0, pending.as_deref_mut()),
                    Offer::Taken | Offer::TakenLast
                ) {
                    delivered = true;
                    break;
                }
            }
            if delivered {
                taken += 1;
            } else if let Some(sub) = members.get(start % members.len()) {
                self.slow(sub);
            }
        }
        taken
    }

    /// Offers the message to one subscriber; with `last`, a channel takes the
    /// message itself (and hands it back if it cannot take it).
    fn offer(
        &self,
        sub: &FanoutSub,
        msg: &mut Option<Message>,
        last: bool,
        pending: Option<&mut Pending>,
    ) -> Offer {
        match &sub.target {
            Target::Channel(tx) => {
                let Some(m) = (if last { msg.take() } else { msg.clone() }) else {
                    return Offer::Closed;
                };
                let (offer, back) = match tx.try_send(Delivery::unacked(m)) {
                    Ok(()) => return Offer::Taken,
                    Err(TrySendError::Full(d)) => (Offer::Full, d),
                    // The guard removes it from the sublist in a moment.
                    Err(TrySendError::Closed(d)) => (Offer::Closed, d),
                };
                if last {
                    *msg = Some(back.message);
                }
                offer
            }
            Target::Sink(sink) => {
                let Some(m) = msg.as_ref() else {
                    return Offer::Closed;
                };
                let offer = sink.offer(m);
                if matches!(offer, Offer::Taken | Offer::TakenLast) {
                    match pending {
                        Some(p) => p.add(sink),
                        None => sink.flush(false),
                    }
                }
                if offer == Offer::TakenLast {
                    self.subs
                        .lock()
                        .expect("fanout sublist lock poisoned")
                        .remove(&sub.subject, sub.queue.as_deref(), sub.id);
                }
                offer
            }
        }
    }

    fn slow(&self, sub: &FanoutSub) {
        self.slow_drops.fetch_add(1, Ordering::Relaxed);
        let n = sub.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        // The first drop and then every 1024th: a stuck reader must not flood the log.
        if n == 1 || n.is_multiple_of(1024) {
            tracing::warn!(
                subject = %sub.subject,
                dropped = n,
                "slow consumer: subscriber channel full, message dropped"
            );
        }
    }

    /// Messages dropped for slow consumers since start.
    /// Whether anything is subscribed to `subject`.
    pub(crate) fn has_interest(&self, subject: &str) -> bool {
        let result = self
            .subs
            .lock()
            .expect("fanout sublist lock poisoned")
            .match_subject(subject);
        !result.psubs.is_empty() || !result.qsubs.is_empty()
    }

    pub(crate) fn slow_consumer_drops(&self) -> u64 {
        self.slow_drops.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn subscription_count(&self) -> usize {
        self.subs
            .lock()
            .expect("fanout sublist lock poisoned")
            .count()
    }

    /// Ends every subscription: their channels close once drained.
    pub(crate) fn close(&self) {
        self.subs
            .lock()
            .expect("fanout sublist lock poisoned")
            .clear();
    }
}

impl Drop for FanoutGuard {
    fn drop(&mut self) {
        if let Some(fanout) = self.fanout.upgrade()
            && let Ok(mut subs) = fanout.subs.lock()
        {
            subs.remove(&self.subject, self.queue.as_deref(), self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn drain(sub: &mut Subscription) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(20), sub.next()).await {
            got.push(String::from_utf8_lossy(&d.message.payload).into_owned());
        }
        got
    }

    #[tokio::test]
    async fn every_plain_subscriber_gets_every_matching_message() {
        let fanout = Arc::new(Fanout::new());
        let mut a = fanout.subscribe("orders.*", None, 16).unwrap();
        let mut b = fanout.subscribe("orders.>", None, 16).unwrap();
        let mut c = fanout.subscribe("payments.*", None, 16).unwrap();
        fanout.publish(Message::new("orders.created", "1"), None);
        fanout.publish(Message::new("orders.paid", "2"), None);
        assert_eq!(drain(&mut a).await, vec!["1", "2"]);
        assert_eq!(drain(&mut b).await, vec!["1", "2"]);
        assert!(drain(&mut c).await.is_empty());
    }

    #[tokio::test]
    async fn a_queue_group_gives_each_message_to_exactly_one_member_and_uses_both() {
        let fanout = Arc::new(Fanout::new());
        let mut m1 = fanout.subscribe("work", Some("g"), 256).unwrap();
        let mut m2 = fanout.subscribe("work", Some("g"), 256).unwrap();
        let mut plain = fanout.subscribe("work", None, 256).unwrap();
        for i in 0..100 {
            fanout.publish(Message::new("work", i.to_string()), None);
        }
        let got1 = drain(&mut m1).await;
        let got2 = drain(&mut m2).await;
        assert!(
            !got1.is_empty() && !got2.is_empty(),
            "both members get work"
        );
        let mut all: Vec<u32> = got1
            .iter()
            .chain(&got2)
            .map(|s| s.parse().unwrap())
            .collect();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "each exactly once");
        assert_eq!(drain(&mut plain).await.len(), 100);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_messages_without_stalling_the_publisher() {
        let fanout = Arc::new(Fanout::new());
        let mut slow = fanout.subscribe("s", None, 2).unwrap();
        let mut fast = fanout.subscribe("s", None, 100).unwrap();
        for i in 0..10 {
            fanout.publish(Message::new("s", i.to_string()), None);
        }
        assert_eq!(drain(&mut slow).await, vec!["0", "1"]);
        assert_eq!(drain(&mut fast).await.len(), 10);
        assert_eq!(fanout.slow_consumer_drops(), 8);
    }

    #[tokio::test]
    async fn a_full_queue_member_hands_the_message_to_another_member() {
        let fanout = Arc::new(Fanout::new());
        let mut full = fanout.subscribe("w", Some("g"), 1).unwrap();
        let mut free = fanout.subscribe("w", Some("g"), 64).unwrap();
        for i in 0..12 {
            // The group is the only (so the last) offer: it gets the message
            // itself, and must get it back from the full member.
            assert_eq!(fanout.publish(Message::new("w", i.to_string()), None), 1);
        }
        let got_full = drain(&mut full).await;
        let got_free = drain(&mut free).await;
        assert_eq!(got_full.len(), 1, "{got_full:?}");
        assert_eq!(got_full.len() + got_free.len(), 12);
        assert_eq!(fanout.slow_consumer_drops(), 0);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes_it() {
        let fanout = Arc::new(Fanout::new());
        let sub = fanout.subscribe("s", None, 2).unwrap();
        assert_eq!(fanout.subscription_count(), 1);
        drop(sub);
        assert_eq!(fanout.subscription_count(), 0);
    }
}
