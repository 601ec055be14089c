//! Durable groups: a JetStream durable pull consumer per group, and a task per
//! member that pulls, hands deliveries over and turns ack/nack into the
//! consumer's ack protocol (`+ACK`, `-NAK {"delay":…}`, `+TERM`, `+WPI`).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::{self, BatchConfig};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use async_nats::{Client, StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use orderly_bus::{AckKind, Acker, BusError, Delivery, GroupOptions, Subscription};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{Inner, closed, from_nats};

/// The durable consumer of `group` on `subject`: a group is per subject (one
/// group name may read several subjects of a stream, each at its own pace),
/// and the name must do without `.`, `*`, `>` and whitespace, hence the
/// sanitised group name plus a stable (FNV-1a) hash of the subject.
pub(crate) fn consumer_name(group: &str, subject: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in subject.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let name: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}_{hash:016x}")
}

pub(crate) async fn subscribe(
    inner: &Arc<Inner>,
    subject: &str,
    group: &str,
    options: GroupOptions,
) -> Result<Subscription, BusError> {
    let stream_name = match inner.js.stream_by_subject(subject).await {
        Ok(name) => name,
        Err(e) if matches!(e.kind(), GetStreamByNameErrorKind::NotFound) => {
            return Err(BusError::NoStream(subject.to_string()));
        }
        Err(e) => return Err(BusError::Unavailable(format!("stream lookup: {e}"))),
    };
    let stream = inner
        .js
        .get_stream_no_info(&stream_name)
        .await
        .map_err(|e| BusError::Unavailable(format!("stream {stream_name}: {e}")))?;
    let in_flight = options.max_in_flight.max(1);
    let config = pull::Config {
        durable_name: Some(consumer_name(group, subject)),
        filter_subject: subject.to_string(),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: options.ack_wait,
        max_deliver: i64::from(options.max_deliveries.max(1)),
        max_ack_pending: i64::try_from(in_flight).unwrap_or(i64::MAX),
        ..Default::default()
    };
    // Creating an existing durable with editable changes (ack wait, limits)
    // updates it: the last member to join sets them.
    let consumer = stream
        .create_consumer(config)
        .await
        .map_err(|e| BusError::Other(format!("consumer {group} on {stream_name}: {e}")))?;
    let inbox = Subject::from(inner.client.new_inbox());
    let replies = inner
        .client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| BusError::Unavailable(format!("pull from {group}: {e}")))?;
    let pulls = Pulls {
        consumer,
        inbox,
        replies,
        batch: in_flight,
        owed: 0,
        ends: Instant::now(),
    };
    let (tx, rx) = mpsc::channel(in_flight);
    let member = Member {
        client: inner.client.clone(),
        js: inner.js.clone(),
        tx,
        options,
        returns: Arc::new(Returns::default()),
    };
    let task = tokio::spawn(member.pump(pulls, inner.shutdown.subscribe()));
    // Not aborted when the subscription drops: the pump notices the member is
    // gone, gives back what it already pulled, and ends by itself.
    drop(task);
    Ok(Subscription::new(rx, None))
}

/// How long each pull request stays open at the server. A member that leaves
/// waits for its open requests to end before it gives anything back (see
/// [`Returns`]), so this bounds how long a leave takes; an idle member sends
/// one request per this.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// How long past its expiry a request may still bring messages before the
/// member stops waiting for the server's word that it ended (a lost status, a
/// reconnect that lost the request): a message later than that waits out the
/// ack wait.
const PULL_GRACE: Duration = Duration::from_secs(2);
/// Before asking again after a pull request could not be sent.
const PULL_RETRY: Duration = Duration::from_millis(100);

/// A member's own pull requests (`$JS.API.CONSUMER.MSG.NEXT`) and the inbox
/// their messages arrive on. Counting what the server still owes them is what
/// lets a leaving member give back every message already sent to it: it stops
/// asking and waits until nothing is owed (each request ends with its last
/// message or a 408/409 status naming what it left undelivered) or until the
/// last one has surely expired.
struct Pulls {
    consumer: PullConsumer,
    inbox: Subject,
    replies: Subscriber,
    batch: usize,
    /// Messages asked for and neither received nor reported undelivered.
    owed: usize,
    /// When the last request sent has surely ended (or, after a failed send,
    /// when to try again).
    ends: Instant,
}

/// What arrived on a member's inbox.
enum Pulled {
    /// A message of the group, one of those owed.
    Message(async_nats::Message),
    /// Bookkeeping: a request ended, a heartbeat, a status to log.
    Status,
    /// The consumer is gone: the subscription ends.
    ConsumerDeleted,
}

impl Pulls {
    /// Asks for more once at most half a batch is owed: one request per half
    /// batch of messages, never more than a batch owed (the consumer's
    /// `max_ack_pending` bounds what the server sends anyway).
    async fn top_up(&mut self) {
        if self.owed > self.batch / 2 {
            return;
        }
        let n = self.batch - self.owed;
        let request = BatchConfig {
            batch: n,
            expires: Some(PULL_EXPIRES),
            ..Default::default()
        };
        let sent_at = Instant::now();
        match self
            .consumer
            .request_batch(request, self.inbox.clone())
            .await
        {
            Ok(()) => {
                self.owed += n;
                self.ends = sent_at + PULL_EXPIRES + PULL_GRACE;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask a NATS consumer for messages; retrying");
                // With requests still open, their messages wake the pump; without, the timer does.
                if self.owed == 0 {
                    self.ends = Instant::now() + PULL_RETRY;
                }
            }
        }
    }

    /// The last request surely ended: whatever it still owed is not coming.
    fn expired(&mut self) {
        if self.owed > 0 {
            tracing::debug!(
                owed = self.owed,
                "a NATS pull request ended without its status"
            );
        }
        self.owed = 0;
    }

    /// The next thing on the inbox (`None`: the connection is gone for good).
    async fn next(&mut self) -> Option<Pulled> {
        let m = self.replies.next().await?;
        Some(self.received(m))
    }

    fn received(&mut self, m: async_nats::Message) -> Pulled {
        match m.status.unwrap_or(StatusCode::OK) {
            StatusCode::OK => {
                self.owed = self.owed.saturating_sub(1);
                Pulled::Message(m)
            }
            StatusCode::IDLE_HEARTBEAT => Pulled::Status,
            StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED => {
                let left = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                match left {
                    Some(left) => self.owed = self.owed.saturating_sub(left),
                    // Which request this ends is unknown: the expiry settles it.
                    None if m.description.as_deref() == Some("Consumer Deleted") => {
                        return Pulled::ConsumerDeleted;
                    }
                    None => {
                        tracing::debug!(status = ?m.status, description = ?m.description, "a NATS pull request ended")
                    }
                }
                Pulled::Status
            }
            // The request reached no JetStream: nothing comes for it, but the
            // expiry settles the count rather than a guess about which one.
            status => {
                tracing::warn!(%status, description = ?m.description, "a NATS pull request failed");
                Pulled::Status
            }
        }
    }
}

/// One member of a group: hands what its pull requests bring to the
/// subscription and turns the member's decisions into the ack protocol.
struct Member {
    client: Client,
    js: jetstream::Context,
    tx: mpsc::Sender<Delivery>,
    options: GroupOptions,
    returns: Arc<Returns>,
}

impl Member {
    async fn pump(self, mut pulls: Pulls, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let left = self.run(&mut pulls, &mut shutdown).await;
        if left {
            self.drain(&mut pulls, &mut shutdown).await;
        }
        // Everything held goes back now; anything given back later goes at once.
        for reply in self.returns.release() {
            if let Err(e) = self
                .client
                .publish(reply, Bytes::from_static(b"-NAK"))
                .await
            {
                tracing::debug!(error = %e, "give-back not sent; the message comes back after ack_wait");
            }
        }
    }

    /// Hands deliveries over until the member leaves (`true`) or the bus
    /// closes (`false`).
    async fn run(
        &self,
        pulls: &mut Pulls,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let handle = tokio::runtime::Handle::current();
        // Half the ack wait: the server hears "in progress" well before it gives up.
        let progress_every = (self.options.ack_wait / 2).max(Duration::from_millis(50));
        // Deliveries handed to the member: when it leaves, those it has not
        // settled go back to the group at once (the port's contract), not after
        // the ack wait.
        let mut handed: Vec<Weak<JsAcker>> = Vec::new();
        loop {
            pulls.top_up().await;
            let next = tokio::select! {
                _ = closed(shutdown) => return false,
                _ = self.tx.closed() => {
                    give_back_handed(&handed);
                    return true;
                }
                _ = tokio::time::sleep_until(pulls.ends) => {
                    pulls.expired();
                    continue;
                }
                next = pulls.next() => next,
            };
            let m = match next {
                None => return false,
                Some(Pulled::Status) => continue,
                Some(Pulled::ConsumerDeleted) => {
                    tracing::warn!("the group's NATS consumer was deleted; the subscription ends");
                    return false;
                }
                Some(Pulled::Message(m)) => m,
            };
            let Some(reply) = m.reply.clone() else {
                continue;
            };
            let m = jetstream::Message {
                message: m,
                context: self.js.clone(),
            };
            let attempt = m
                .info()
                .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
                .unwrap_or(1);
            let acker = Arc::new(JsAcker {
                client: self.client.clone(),
                reply,
                attempt,
                max_deliveries: self.options.max_deliveries,
                handle: handle.clone(),
                settled: AtomicBool::new(false),
                subscription: self.tx.downgrade(),
                returns: self.returns.clone(),
            });
            let delivery = Delivery::with_acker(from_nats(&m.message), attempt, acker.clone());
            // While the member is busy with earlier deliveries this one waits here;
            // its ack wait should only run once the member has it.
            let mut send = pin!(self.tx.send(delivery));
            let mut progress = tokio::time::interval_at(
                tokio::time::Instant::now() + progress_every,
                progress_every,
            );
            loop {
                tokio::select! {
                    sent = &mut send => {
                        if sent.is_err() {
                            // The member left: the message goes back.
                            acker.give_back();
                            give_back_handed(&handed);
                            return true;
                        }
                        handed.retain(|a| a.upgrade().is_some_and(|a| !a.settled.load(Ordering::Acquire)));
                        handed.push(Arc::downgrade(&acker));
                        break;
                    }
                    _ = progress.tick() => acker.send(Bytes::from_static(b"+WPI")),
                    _ = closed(shutdown) => {
                        acker.give_back();
                        return false;
                    }
                }
            }
        }
    }

    /// The member left: ask for nothing more, and take back everything the
    /// server already sent or still sends for the open requests, until
    /// nothing is owed or the last request has surely ended.
    async fn drain(&self, pulls: &mut Pulls, shutdown: &mut tokio::sync::watch::Receiver<bool>) {
        while pulls.owed > 0 {
            let next = tokio::select! {
                _ = closed(shutdown) => return,
                _ = tokio::time::sleep_until(pulls.ends) => {
                    pulls.expired();
                    return;
                }
                next = pulls.next() => next,
            };
            match next {
                None | Some(Pulled::ConsumerDeleted) => return,
                Some(Pulled::Status) => {}
                Some(Pulled::Message(m)) => {
                    if let Some(reply) = m.reply
                        && !self.returns.hold(&reply)
                    {
                        // Not held: released already (cannot happen before
                        // the pump ends), so straight back.
                        let _ = self
                            .client
                            .publish(reply, Bytes::from_static(b"-NAK"))
                            .await;
                    }
                }
            }
        }
    }
}

/// The deliveries a member that left gives back. While its pump waits for the
/// member's open pull requests to end they are held rather than `-NAK`ed at
/// once: a message given back while one of those requests is open could be
/// sent straight back to the member that is leaving, spending one of its
/// deliveries for nothing. Once the pump ends, gives back go out at once.
struct Returns(Mutex<Option<Vec<Subject>>>);

impl Default for Returns {
    fn default() -> Self {
        Self(Mutex::new(Some(Vec::new())))
    }
}

impl Returns {
    /// Keeps `reply` to give back when the pump ends; `false` once it has.
    fn hold(&self, reply: &Subject) -> bool {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match held.as_mut() {
            Some(held) => {
                held.push(reply.clone());
                true
            }
            None => false,
        }
    }

    /// What is held, to give back now; from now on nothing more is held.
    fn release(&self) -> Vec<Subject> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_default()
    }
}

/// The member left: every delivery it holds undecided goes back to the group.
fn give_back_handed(handed: &[Weak<JsAcker>]) {
    for acker in handed.iter().filter_map(Weak::upgrade) {
        acker.give_back();
    }
}

struct JsAcker {
    client: Client,
    reply: Subject,
    attempt: u32,
    max_deliveries: u32,
    handle: tokio::runtime::Handle,
    settled: AtomicBool,
    /// Closed once the member's `Subscription` is dropped.
    subscription: mpsc::WeakSender<Delivery>,
    returns: Arc<Returns>,
}

impl Drop for JsAcker {
    /// A delivery dropped undecided after its subscription closed (still
    /// queued for the member, or held past the close) goes back to the group
    /// at once; while the subscription is open, the ack wait decides.
    fn drop(&mut self) {
        let closed = self.subscription.upgrade().is_none_or(|tx| tx.is_closed());
        if closed {
            self.give_back();
        }
    }
}

impl JsAcker {
    /// Back to the group, undecided: once the pump no longer holds give-backs
    /// (see [`Returns`]), at once.
    fn give_back(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) && !self.returns.hold(&self.reply) {
            self.send(Bytes::from_static(b"-NAK"));
        }
    }

    fn send(&self, body: Bytes) {
        let client = self.client.clone();
        let reply = self.reply.clone();
        // `settle` must not block; the publish only queues on the connection.
        self.handle.spawn(async move {
            if let Err(e) = client.publish(reply, body).await {
                tracing::debug!(error = %e, "ack not sent; the message comes back after ack_wait");
            }
        });
    }
}

impl Acker for JsAcker {
    fn settle(&self, kind: AckKind) {
        self.settled.store(true, Ordering::Release);
        let body = match kind {
            AckKind::Ack => Bytes::from_static(b"+ACK"),
            // The last allowed delivery failed: stop it for good rather than
            // let the server keep it pending until ack_wait runs out.
            AckKind::Nack(_) if self.attempt >= self.max_deliveries => Bytes::from_static(b"+TERM"),
            AckKind::Nack(delay) if delay.is_zero() => Bytes::from_static(b"-NAK"),
            AckKind::Nack(delay) => format!("-NAK {{\"delay\":{}}}", delay.as_nanos()).into(),
        };
        self.send(body);
    }

    fn in_progress(&self) {
        if !self.settled.load(Ordering::Acquire) {
            self.send(Bytes::from_static(b"+WPI"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_become_valid_consumer_names() {
        let a = consumer_name("orders.consumer group>", "a.b");
        assert!(a.starts_with("orders_consumer_group__"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        );
        assert_eq!(a, consumer_name("orders.consumer group>", "a.b"), "stable");
        assert_ne!(
            a,
            consumer_name("orders.consumer group>", "a.c"),
            "per subject"
        );
    }
}
