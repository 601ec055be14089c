//! Publish → deliver: one publisher, one subscriber, a bounded number of
//! messages in flight (every broker drops a slow plain subscriber's messages,
//! so unbounded publishing would measure the drops). Each payload carries its
//! send time; the subscriber records the delivery latency.
//!
//! Publishes are pipelined: the publisher does not wait for one publish to
//! return before it starts the next, only for room in the window. A publish
//! that waits for its broker's confirmation (Kafka's delivery report, a
//! JetStream PubAck) would otherwise measure one round trip per message.
//!
//! The durable runs ([`run_bus_durable`], [`run_jetstream_durable`]) publish
//! to a stream and wait for each publish to be stored; a durable group with
//! explicit acks consumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use orderly_bus::{Bus, GroupOptions, Message, StreamConfig};
use tokio::sync::{Notify, Semaphore};

use crate::report::{Counted, micros_histogram};

/// One bus run.
#[derive(Debug, Clone, Copy)]
pub struct BusSpec {
    /// Publishing before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Messages published but not yet delivered, at most.
    pub window: usize,
    /// Bytes per message.
    pub payload: usize,
}

/// How messages are published.
#[derive(Clone)]
enum Publisher {
    Bus(Arc<dyn Bus>, String),
    Nats(async_nats::Client, String),
    /// A JetStream publish, done once the PubAck says it is stored.
    JetStream(async_nats::jetstream::Context, String),
    /// No broker at all: the harness's own ceiling.
    Channel(tokio::sync::mpsc::UnboundedSender<Bytes>),
}

impl Publisher {
    async fn publish(&self, payload: Bytes) -> Result<()> {
        match self {
            Publisher::Bus(bus, subject) => Ok(bus.publish(Message::new(subject, payload)).await?),
            Publisher::Nats(client, subject) => {
                Ok(client.publish(subject.clone(), payload).await?)
            }
            Publisher::JetStream(js, subject) => {
                js.publish(subject.clone(), payload)
                    .await?
                    .await
                    .context("no PubAck")?;
                Ok(())
            }
            Publisher::Channel(tx) => tx
                .send(payload)
                .map_err(|_| anyhow!("the receiver is gone")),
        }
    }
}

const PROBE: u8 = 0;
const REAL: u8 = 1;

/// The subscriber's side: counts, latencies, and the window's permits.
struct Probe {
    base: Instant,
    window: Semaphore,
    ready: AtomicBool,
    ready_notify: Notify,
    measure_from_ns: AtomicU64,
    end_ns: AtomicU64,
    count: AtomicU64,
    delivered: AtomicU64,
    hist: std::sync::Mutex<Histogram<u64>>,
}

impl Probe {
    fn new(window: usize) -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            window: Semaphore::new(window.max(1)),
            ready: AtomicBool::new(false),
            ready_notify: Notify::new(),
            measure_from_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            hist: std::sync::Mutex::new(micros_histogram()),
        })
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn payload(&self, kind: u8, size: usize) -> Bytes {
        let mut p = vec![0u8; size.max(9)];
        p[..8].copy_from_slice(&self.now_ns().to_le_bytes());
        p[8] = kind;
        Bytes::from(p)
    }

    /// Called by the subscriber for every delivered payload.
    fn on_payload(&self, p: &[u8]) {
        if p.len() < 9 {
            return;
        }
        if p[8] == PROBE {
            if !self.ready.swap(true, Ordering::AcqRel) {
                self.ready_notify.notify_waiters();
            }
            return;
        }
        let now = self.now_ns();
        self.window.add_permits(1);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&p[..8]);
        let sent = u64::from_le_bytes(sent);
        if sent >= self.measure_from_ns.load(Ordering::Relaxed)
            && now <= self.end_ns.load(Ordering::Relaxed)
        {
            self.count.fetch_add(1, Ordering::Relaxed);
            let us = (now.saturating_sub(sent) / 1000).max(1);
            if let Ok(mut h) = self.hist.lock() {
                let high = h.high();
                let _ = h.record(us.min(high));
            }
        }
    }
}

/// Subscribes with `subscribe` (which spawns the task feeding `Probe::on_payload`
/// and returns it once subscribed), waits until probes come through, then measures.
async fn run<F, Fut>(
    publisher: Publisher,
    subscribe: F,
    spec: BusSpec,
    done: Arc<AtomicU64>,
) -> Result<Counted>
where
    F: FnOnce(Arc<Probe>) -> Fut,
    Fut: std::future::Future<Output = Result<tokio::task::JoinHandle<()>>>,
{
    let probe = Probe::new(spec.window);
    let receiver = subscribe(probe.clone()).await.context("subscribe")?;
    let result = measure(&publisher, &probe, spec, done).await;
    receiver.abort();
    result
}

async fn measure(
    publisher: &Publisher,
    probe: &Arc<Probe>,
    spec: BusSpec,
    done: Arc<AtomicU64>,
) -> Result<Counted> {
    // A subscription may take a moment to reach the broker (Kafka joins a group).
    let ready_by = Instant::now() + Duration::from_secs(60);
    while !probe.ready.load(Ordering::Acquire) {
        if Instant::now() > ready_by {
            bail!("no message came through within 60 s of subscribing");
        }
        let notified = probe.ready_notify.notified();
        publisher
            .publish(probe.payload(PROBE, spec.payload))
            .await
            .context("publish")?;
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
    let start = probe.now_ns();
    let measure_from = start + spec.warmup.as_nanos() as u64;
    let end = measure_from + spec.duration.as_nanos() as u64;
    probe.measure_from_ns.store(measure_from, Ordering::Relaxed);
    probe.end_ns.store(end, Ordering::Relaxed);
    let mut errors = 0u64;
    let mut sent = 0u64;
    let mut publishing = FuturesUnordered::new();
    let mut settle = |result: Result<()>| match result {
        Ok(()) => {
            sent += 1;
            if sent.is_multiple_of(256) {
                done.store(probe.delivered.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        Err(_) => {
            errors += 1;
            probe.window.add_permits(1);
        }
    };
    while probe.now_ns() < end {
        let left = Duration::from_nanos(end.saturating_sub(probe.now_ns()));
        let permit = tokio::select! {
            biased;
            Some(result) = publishing.next(), if !publishing.is_empty() => {
                settle(result);
                continue;
            }
            permit = tokio::time::timeout(left, probe.window.acquire()) => match permit {
                Ok(Ok(p)) => p,
                _ => break,
            },
        };
        permit.forget();
        publishing.push(publisher.publish(probe.payload(REAL, spec.payload)));
    }
    // Publishes still waiting for their confirmation end with the run.
    drop(publishing);
    // Deliveries still in flight when the window closes are not counted: give
    // the subscriber a moment so the last in-window ones are.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hist = probe
        .hist
        .lock()
        .map_err(|_| anyhow!("histogram lock poisoned"))?
        .clone();
    Ok(Counted {
        count: probe.count.load(Ordering::Relaxed),
        errors,
        latency_us: hist,
        seconds: spec.duration.as_secs_f64(),
    })
}

/// A subject nobody else uses.
fn unique_subject() -> String {
    format!("bench.{}", uuid::Uuid::new_v4().simple())
}

/// Publish → deliver through a [`Bus`] (the embedded broker in process, Kafka …).
pub async fn run_bus(bus: Arc<dyn Bus>, spec: BusSpec, done: Arc<AtomicU64>) -> Result<Counted> {
    let subject = unique_subject();
    let b = bus.clone();
    let s = subject.clone();
    run(
        Publisher::Bus(bus, subject),
        move |probe| async move {
            let mut sub = b.subscribe(&s).await?;
            Ok(tokio::spawn(async move {
                while let Some(d) = sub.next().await {
                    probe.on_payload(&d.message.payload);
                }
            }))
        },
        spec,
        done,
    )
    .await
}

/// Publish → deliver with async-nats, publisher and subscriber on their own connections.
pub async fn run_nats(url: &str, spec: BusSpec, done: Arc<AtomicU64>) -> Result<Counted> {
    let connect = |name: &'static str| {
        async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .connect(url.to_string())
    };
    let publisher = connect("orderly-bench-pub")
        .await
        .with_context(|| format!("connect {url}"))?;
    let subscriber = connect("orderly-bench-sub")
        .await
        .with_context(|| format!("connect {url}"))?;
    let subject = unique_subject();
    let s = subject.clone();
    let result = run(
        Publisher::Nats(publisher.clone(), subject),
        move |probe| async move {
            let mut sub = subscriber.subscribe(s).await?;
            subscriber.flush().await?;
            Ok(tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    probe.on_payload(&m.payload);
                }
            }))
        },
        spec,
        done,
    )
    .await;
    let _ = publisher.flush().await;
    result
}

/// The harness alone: a tokio channel where the broker would be. What a broker
/// measured here cannot exceed (the in-process broker delivers through one too).
pub async fn run_channel(spec: BusSpec, done: Arc<AtomicU64>) -> Result<Counted> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    run(
        Publisher::Channel(tx),
        move |probe| async move {
            Ok(tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    probe.on_payload(&p);
                }
            }))
        },
        spec,
        done,
    )
    .await
}

/// Options of the durable group the durable runs consume with.
fn durable_group(window: usize) -> GroupOptions {
    GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 5,
        max_in_flight: window.max(1),
    }
}

/// Publish (stored in a stream) → deliver to a durable group → explicit ack,
/// through a [`Bus`] (the embedded broker in process, Kafka …).
pub async fn run_bus_durable(
    bus: Arc<dyn Bus>,
    spec: BusSpec,
    done: Arc<AtomicU64>,
) -> Result<Counted> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let subject = format!("benchdurable.{id}");
    bus.ensure_stream(StreamConfig::new(
        format!("bench_{id}"),
        &[subject.as_str()],
    ))
    .await
    .context("create the stream")?;
    let mut sub = bus
        .subscribe_group(&subject, "bench", durable_group(spec.window))
        .await
        .context("join the durable group")?;
    run(
        Publisher::Bus(bus, subject),
        move |probe| async move {
            Ok(tokio::spawn(async move {
                while let Some(d) = sub.next().await {
                    d.ack();
                    probe.on_payload(&d.message.payload);
                }
            }))
        },
        spec,
        done,
    )
    .await
}

/// The same with async-nats's JetStream API: a file-storage stream, PubAcks,
/// a durable pull consumer with explicit acks; publisher and consumer on
/// their own connections.
pub async fn run_jetstream_durable(
    url: &str,
    spec: BusSpec,
    done: Arc<AtomicU64>,
) -> Result<Counted> {
    use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull, stream};
    let connect = |name: &'static str| {
        async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(3))
            .connect(url.to_string())
    };
    let publisher = connect("orderly-bench-durable-pub")
        .await
        .with_context(|| format!("connect {url}"))?;
    let subscriber = connect("orderly-bench-durable-sub")
        .await
        .with_context(|| format!("connect {url}"))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("bench_{id}");
    let subject = format!("benchdurable.{id}");
    let js = jetstream::new(publisher.clone());
    let created = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("create stream {name}: {e}"))?;
    drop(created);
    let sub_js = jetstream::new(subscriber);
    let consumer = sub_js
        .get_stream(&name)
        .await
        .map_err(|e| anyhow!("stream {name}: {e}"))?
        .create_consumer(pull::Config {
            durable_name: Some("bench".into()),
            filter_subject: subject.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: i64::try_from(spec.window.max(1) * 2).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("create consumer: {e}"))?;
    let result = run(
        Publisher::JetStream(js.clone(), subject),
        move |probe| async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(256)
                .messages()
                .await
                .map_err(|e| anyhow!("pull: {e}"))?;
            Ok(tokio::spawn(async move {
                while let Some(Ok(m)) = messages.next().await {
                    let _ = m.ack().await;
                    probe.on_payload(&m.payload);
                }
            }))
        },
        spec,
        done,
    )
    .await;
    let _ = js.delete_stream(&name).await;
    result
}
