//! Durable groups: a JetStream durable pull consumer per group, and a task per
//! member that pulls, hands deliveries over and turns ack/nack into the
//! consumer's ack protocol (`+ACK`, `-NAK {"delay":…}`, `+TERM`, `+WPI`).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures::StreamExt;
use orderly_bus::{AckKind, Acker, BusError, Delivery, GroupOptions, Subscription};
use tokio::sync::mpsc;

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
    let consumer: pull::Stream = stream
        .create_consumer(config)
        .await
        .map_err(|e| BusError::Other(format!("consumer {group} on {stream_name}: {e}")))?
        .stream()
        .max_messages_per_batch(in_flight)
        .messages()
        .await
        .map_err(|e| BusError::Unavailable(format!("pull from {group}: {e}")))?;
    let (tx, rx) = mpsc::channel(in_flight);
    let task = tokio::spawn(pump(
        inner.client.clone(),
        consumer,
        tx,
        options,
        inner.shutdown.subscribe(),
    ));
    // Not aborted when the subscription drops: the pump notices the member is
    // gone, gives back what it already pulled, and ends by itself.
    drop(task);
    Ok(Subscription::new(rx, None))
}

/// How long a closing member waits for each message the server already sent
/// it. A message that arrives later waits out the ack wait, so this is
/// generous for a loaded machine; it is paid once, after the last one.
const GIVE_BACK_WAIT: Duration = Duration::from_millis(500);

/// The member left: `-NAK` what the server already sent for its last pull (at
/// most one batch), so it does not wait out `ack_wait`. Bounded, because the
/// stream keeps pulling while it is read: reading on would take messages from
/// the members that remain.
async fn give_back_pulled(client: &Client, messages: &mut pull::Stream, batch: usize) {
    for _ in 0..batch {
        let Ok(Some(next)) = tokio::time::timeout(GIVE_BACK_WAIT, messages.next()).await else {
            return;
        };
        if let Ok(m) = next
            && let Some(reply) = m.reply.clone()
            && let Err(e) = client.publish(reply, Bytes::from_static(b"-NAK")).await
        {
            tracing::debug!(error = %e, "give-back not sent; the message comes back after ack_wait");
        }
    }
}

async fn pump(
    client: Client,
    mut messages: pull::Stream,
    tx: mpsc::Sender<Delivery>,
    options: GroupOptions,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let handle = tokio::runtime::Handle::current();
    // Half the ack wait: the server hears "in progress" well before it gives up.
    let progress_every = (options.ack_wait / 2).max(Duration::from_millis(50));
    // Deliveries handed to the member: when it leaves, those it has not
    // settled go back to the group at once (the port's contract), not after
    // the ack wait.
    let mut handed: Vec<Weak<JsAcker>> = Vec::new();
    loop {
        let next = tokio::select! {
            _ = closed(&mut shutdown) => return,
            _ = tx.closed() => {
                give_back_handed(&handed);
                give_back_pulled(&client, &mut messages, options.max_in_flight.max(1)).await;
                return;
            }
            next = messages.next() => next,
        };
        let m = match next {
            None => return,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                // Missed heartbeats, reconnects: the stream recovers by itself.
                tracing::warn!(error = %e, "pulling from a NATS consumer failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(reply) = m.reply.clone() else {
            continue;
        };
        let attempt = m
            .info()
            .map(|i| u32::try_from(i.delivered.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(1);
        let acker = Arc::new(JsAcker {
            client: client.clone(),
            reply,
            attempt,
            max_deliveries: options.max_deliveries,
            handle: handle.clone(),
            settled: AtomicBool::new(false),
            subscription: tx.downgrade(),
        });
        let delivery = Delivery::with_acker(from_nats(&m.message), attempt, acker.clone());
        // While the member is busy with earlier deliveries this one waits here;
        // its ack wait should only run once the member has it.
        let mut send = pin!(tx.send(delivery));
        let mut progress =
            tokio::time::interval_at(tokio::time::Instant::now() + progress_every, progress_every);
        loop {
            tokio::select! {
                sent = &mut send => {
                    if sent.is_err() {
                        // The member left: give the message back at once.
                        acker.give_back();
                        give_back_handed(&handed);
                        give_back_pulled(&client, &mut messages, options.max_in_flight.max(1)).await;
                        return;
                    }
                    handed.retain(|a| a.upgrade().is_some_and(|a| !a.settled.load(Ordering::Acquire)));
                    handed.push(Arc::downgrade(&acker));
                    break;
                }
                _ = progress.tick() => acker.send(Bytes::from_static(b"+WPI")),
                _ = closed(&mut shutdown) => {
                    acker.give_back();
                    return;
                }
            }
        }
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
}

impl Drop for JsAcker {
    /// A delivery dropped undecided after its subscription closed (still
    /// queued for the member, or held past the close) goes back to the group
    /// at once; while the subscription is open, the ack wait decides.
    fn drop(&mut self) {
        let closed = self.subscription.upgrade().is_none_or(|tx| tx.is_closed());
        if closed && !self.settled.load(Ordering::Acquire) {
            self.send(Bytes::from_static(b"-NAK"));
        }
    }
}

impl JsAcker {
    /// Back to the group now: the member never saw it.
    fn give_back(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
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
