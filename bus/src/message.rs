use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Message headers: ordered, string to string (NATS headers, Kafka headers).
pub type Headers = BTreeMap<String, String>;

/// A message as published and as delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Dot-separated subject (`new_order`, `orders.eu.created`). Kafka: the topic.
    pub subject: String,
    /// Partitioning / ordering key (the order id); ordering is kept per key where
    /// the adapter's [`crate::Features::ordered_per_key`] says so.
    pub key: Option<String>,
    /// Headers: the contract's event headers ([`crate::header`]) and any others.
    pub headers: Headers,
    /// The body, opaque to the bus (JSON for orderly's events).
    pub payload: Bytes,
}

impl Message {
    /// A message to `subject` with no key and no headers.
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            subject: subject.into(),
            key: None,
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// The same message with its ordering key set.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same message with header `name` set to `value`.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What a delivery's receiver decided; sent back to the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Done: the message is not delivered again.
    Ack,
    /// Redeliver after the delay.
    Nack(Duration),
}

/// The adapter side of a delivery: told once how it ended.
pub trait Acker: Send + Sync + 'static {
    /// Called once, with the receiver's decision.
    fn settle(&self, kind: AckKind);

    /// The receiver is still working on it: restart the ack wait without
    /// counting a delivery (JetStream's `+WPI`). Called any number of times
    /// before `settle`. The conformance kit fails an adapter where this does
    /// nothing.
    fn in_progress(&self) {}
}

const OPEN: u8 = 0;
const ACKED: u8 = 1;
const NACKED: u8 = 2;

/// A message handed to a subscriber. For durable groups it must be acked;
/// an un-acked delivery is redelivered after the group's ack wait.
///
/// `ack` and `nack` never block, are idempotent, and return `false` when the
/// opposite decision was already made (Watermill's contract). Dropping a delivery
/// without deciding leaves it to the ack-wait redelivery.
pub struct Delivery {
    /// The message delivered.
    pub message: Message,
    /// 1 on the first delivery, 2 on the first redelivery, …
    pub attempt: u32,
    state: AtomicU8,
    acker: Option<Arc<dyn Acker>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Delivery {
    /// A delivery that needs no acknowledgement (plain fan-out subscriptions).
    pub fn unacked(message: Message) -> Self {
        Self {
            message,
            attempt: 1,
            state: AtomicU8::new(OPEN),
            acker: None,
        }
    }

    /// A delivery of a durable group, settled through `acker`.
    pub fn with_acker(message: Message, attempt: u32, acker: Arc<dyn Acker>) -> Self {
        Self {
            message,
            attempt,
            state: AtomicU8::new(OPEN),
            acker: Some(acker),
        }
    }

    /// Done with it; `false` if it was nacked already.
    pub fn ack(&self) -> bool {
        self.settle(ACKED, AckKind::Ack)
    }

    /// Put `wrap` around the adapter's acker (decorators observe how a delivery
    /// ends). Deliveries without an acker stay without one.
    pub(crate) fn map_acker(mut self, wrap: impl FnOnce(Arc<dyn Acker>) -> Arc<dyn Acker>) -> Self {
        self.acker = self.acker.map(wrap);
        self
    }

    /// Deliver it again after `delay`; `false` if it was acked already.
    pub fn nack(&self, delay: Duration) -> bool {
        self.settle(NACKED, AckKind::Nack(delay))
    }

    /// Still working on it: the ack wait starts again from now, and no
    /// delivery is counted, so a receiver that holds a delivery while a
    /// dependency is down neither loses it to a redelivery nor spends its
    /// `max_deliveries`. `false` once it was acked or nacked.
    pub fn in_progress(&self) -> bool {
        if self.state.load(Ordering::Acquire) != OPEN {
            return false;
        }
        if let Some(acker) = &self.acker {
            acker.in_progress();
        }
        true
    }

    fn settle(&self, to: u8, kind: AckKind) -> bool {
        match self
            .state
            .compare_exchange(OPEN, to, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                if let Some(acker) = &self.acker {
                    acker.settle(kind);
                }
                true
            }
            Err(current) => current == to,
        }
    }
}

/// A stream of deliveries. Dropping it (or [`Subscription::close`]) ends the
/// subscription; un-acked deliveries of a durable group go back to the group.
pub struct Subscription {
    rx: mpsc::Receiver<Delivery>,
    _guard: Option<Box<dyn Send + Sync>>,
    map: Option<DeliveryMap>,
}

type DeliveryMap = Box<dyn Fn(Delivery) -> Delivery + Send + Sync>;

impl Subscription {
    /// `guard` is dropped with the subscription; adapters use it to unsubscribe.
    pub fn new(rx: mpsc::Receiver<Delivery>, guard: Option<Box<dyn Send + Sync>>) -> Self {
        Self {
            rx,
            _guard: guard,
            map: None,
        }
    }

    /// Every delivery passes through `f` as it is taken (decorators such as
    /// [`crate::metered`] use it; no extra task or channel on the way).
    pub(crate) fn map_deliveries(
        mut self,
        f: impl Fn(Delivery) -> Delivery + Send + Sync + 'static,
    ) -> Self {
        self.map = Some(match self.map.take() {
            None => Box::new(f),
            Some(before) => Box::new(move |d| f(before(d))),
        });
        self
    }

    /// The next delivery; `None` once the subscription or the bus is closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await?;
        Some(match &self.map {
            Some(f) => f(delivery),
            None => delivery,
        })
    }

    /// Ends the subscription (dropping it does the same).
    pub fn close(self) {}
}
