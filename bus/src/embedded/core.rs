//! Core pub/sub: in-process fan-out with no storage, like NATS core.
//!
//! Every plain subscriber of a matching subject gets each message; of each queue
//! group one member gets it, chosen round robin. Channels are bounded and sends
//! never wait: a subscriber whose channel is full loses the message (a "slow
//! consumer"), so one stuck reader cannot stall publishers or other readers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::subject::Sublist;
use crate::{BusError, Delivery, Message, Subscription};

/// Messages a core subscriber may have waiting before it counts as slow.
pub(crate) const SUB_PENDING: usize = 8192;

struct CoreSub {
    tx: mpsc::Sender<Delivery>,
    subject: String,
    dropped: AtomicU64,
}

pub(crate) struct Core {
    subs: Mutex<Sublist<Arc<CoreSub>>>,
    next_id: AtomicU64,
    next_member: AtomicUsize,
    slow_drops: AtomicU64,
}

impl Core {
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(CoreSub {
            tx,
            subject: subject.to_string(),
            dropped: AtomicU64::new(0),
        });
        self.subs
            .lock()
            .expect("core sublist lock poisoned")
            .insert(subject, queue, id, sub)
            .map_err(|why| BusError::InvalidSubject(subject.to_string(), why))?;
        let guard = CoreGuard {
            core: Arc::downgrade(self),
            subject: subject.to_string(),
            queue: queue.map(str::to_string),
            id,
        };
        Ok(Subscription::new(rx, Some(Box::new(guard))))
    }

    /// Offers `msg` to every matching subscriber; returns how many took it
    /// (a queue group counts once), which the wire listener needs for the
    /// no-responders status of requests.
    pub(crate) fn publish(&self, msg: &Message) -> usize {
        let mut taken = 0;
        let result = self
            .subs
            .lock()
            .expect("core sublist lock poisoned")
            .match_subject(&msg.subject);
        for sub in &result.psubs {
            if self.offer(sub, msg) {
                taken += 1;
            }
        }
        for (_, members) in &result.qsubs {
            let start = self.next_member.fetch_add(1, Ordering::Relaxed);
            // A full member should not lose the message while another has room.
            let mut delivered = false;
            for i in 0..members.len() {
                let sub = &members[(start + i) % members.len()];
                match sub.tx.try_send(Delivery::unacked(msg.clone())) {
                    Ok(()) => {
                        delivered = true;
                        break;
                    }
                    Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {}
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

    fn offer(&self, sub: &CoreSub, msg: &Message) -> bool {
        match sub.tx.try_send(Delivery::unacked(msg.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.slow(sub);
                false
            }
            // The guard removes it from the sublist in a moment.
            Err(TrySendError::Closed(_)) => false,
        }
    }

    fn slow(&self, sub: &CoreSub) {
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
    pub(crate) fn slow_consumer_drops(&self) -> u64 {
        self.slow_drops.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn subscription_count(&self) -> usize {
        self.subs
            .lock()
            .expect("core sublist lock poisoned")
            .count()
    }

    /// Ends every subscription: their channels close once drained.
    pub(crate) fn close(&self) {
        self.subs
            .lock()
            .expect("core sublist lock poisoned")
            .clear();
    }
}

struct CoreGuard {
    core: Weak<Core>,
    subject: String,
    queue: Option<String>,
    id: u64,
}

impl Drop for CoreGuard {
    fn drop(&mut self) {
        if let Some(core) = self.core.upgrade()
            && let Ok(mut subs) = core.subs.lock()
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
        let core = Arc::new(Core::new());
        let mut a = core.subscribe("orders.*", None, 16).unwrap();
        let mut b = core.subscribe("orders.>", None, 16).unwrap();
        let mut c = core.subscribe("payments.*", None, 16).unwrap();
        core.publish(&Message::new("orders.created", "1"));
        core.publish(&Message::new("orders.paid", "2"));
        assert_eq!(drain(&mut a).await, vec!["1", "2"]);
        assert_eq!(drain(&mut b).await, vec!["1", "2"]);
        assert!(drain(&mut c).await.is_empty());
    }

    #[tokio::test]
    async fn a_queue_group_gives_each_message_to_exactly_one_member_and_uses_both() {
        let core = Arc::new(Core::new());
        let mut m1 = core.subscribe("work", Some("g"), 256).unwrap();
        let mut m2 = core.subscribe("work", Some("g"), 256).unwrap();
        let mut plain = core.subscribe("work", None, 256).unwrap();
        for i in 0..100 {
            core.publish(&Message::new("work", i.to_string()));
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
        let core = Arc::new(Core::new());
        let mut slow = core.subscribe("s", None, 2).unwrap();
        let mut fast = core.subscribe("s", None, 100).unwrap();
        for i in 0..10 {
            core.publish(&Message::new("s", i.to_string()));
        }
        assert_eq!(drain(&mut slow).await, vec!["0", "1"]);
        assert_eq!(drain(&mut fast).await.len(), 10);
        assert_eq!(core.slow_consumer_drops(), 8);
    }

    #[tokio::test]
    async fn dropping_a_subscription_unsubscribes_it() {
        let core = Arc::new(Core::new());
        let sub = core.subscribe("s", None, 2).unwrap();
        assert_eq!(core.subscription_count(), 1);
        drop(sub);
        assert_eq!(core.subscription_count(), 0);
    }
}
