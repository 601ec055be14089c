//! The conformance kit fails adapters that break the contract: each test wraps
//! the embedded broker or queue with one fault and expects the matching case
//! to panic. (Test names avoid "conformance" so the matrix script skips them.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::conformance::{
    self, BusCaps, BusFactory, QueueCaps, QueueFactory, Verdict, bus, queue,
};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{
    AckKind, Acker, Bus, BusError, DeadJob, Delivery, Features, GroupOptions, Job, JobQueue,
    Message, NewJob, QueueError, QueueStats, RetryOutcome, RetryPolicy, StreamConfig, Subscription,
};

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    StripHeaders,
    NoPayloadLimit,
    HalveAckWait,
    ForgetDedup,
    IgnoreExtend,
    IgnoreInProgress,
    ReleaseSpendsAnAttempt,
}

struct FaultyBus {
    inner: EmbeddedBroker,
    fault: Fault,
}

const DECLARED_MAX: usize = 64 * 1024;

fn features() -> Features {
    Features {
        durable: false,
        ordered_per_key: true,
        consumer_groups: true,
        redelivery_delay: true,
        headers: true,
        max_payload: DECLARED_MAX,
    }
}

#[async_trait]
impl Bus for FaultyBus {
    fn features(&self) -> Features {
        features()
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        self.inner.ensure_stream(config).await
    }

    async fn publish(&self, mut message: Message) -> Result<(), BusError> {
        if self.fault == Fault::StripHeaders {
            message.headers.clear();
        }
        if self.fault != Fault::NoPayloadLimit && message.payload.len() > DECLARED_MAX {
            return Err(BusError::PayloadTooLarge {
                size: message.payload.len(),
                max: DECLARED_MAX,
            });
        }
        self.inner.publish(message).await
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        self.inner.subscribe(subject).await
    }

    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        mut options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        if self.fault == Fault::HalveAckWait {
            options.ack_wait /= 2;
        }
        let sub = self.inner.subscribe_group(subject, group, options).await?;
        if self.fault == Fault::IgnoreInProgress {
            return Ok(deaf_to_in_progress(sub));
        }
        Ok(sub)
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// Settles the real delivery; `in_progress` does nothing.
struct DeafAcker(Delivery);

impl Acker for DeafAcker {
    fn settle(&self, kind: AckKind) {
        match kind {
            AckKind::Ack => self.0.ack(),
            AckKind::Nack(delay) => self.0.nack(delay),
        };
    }
}

/// The same deliveries, through an acker that ignores `in_progress`.
fn deaf_to_in_progress(mut sub: Subscription) -> Subscription {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(d) = sub.next().await {
            let (message, attempt) = (d.message.clone(), d.attempt);
            let outer = Delivery::with_acker(message, attempt, Arc::new(DeafAcker(d)));
            if tx.send(outer).await.is_err() {
                break;
            }
        }
    });
    Subscription::new(rx, None)
}

struct FaultyQueue {
    inner: EmbeddedQueue,
    fault: Fault,
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn enqueue(&self, mut job: NewJob) -> Result<bool, QueueError> {
        if self.fault == Fault::ForgetDedup {
            job.id = format!("{}-{}", job.id, uuid::Uuid::new_v4().simple());
        }
        self.inner.enqueue(job).await
    }

    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        self.inner.reserve(queue, visibility, wait).await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.inner.ack(job).await
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        self.inner.fail(job, error).await
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        if self.fault == Fault::IgnoreExtend {
            return Ok(());
        }
        self.inner.extend(job, visibility).await
    }

    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        if self.fault == Fault::ReleaseSpendsAnAttempt {
            return self.inner.fail(job, "released").await.map(|_| ());
        }
        self.inner.release(job, after).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.inner.stats(queue).await
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        self.inner.dead_letters(queue, limit).await
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        self.inner.requeue_dead(queue, id).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.inner.check().await
    }
}

struct Factory {
    fault: Fault,
    broker: tokio::sync::OnceCell<EmbeddedBroker>,
}

impl Factory {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            broker: tokio::sync::OnceCell::new(),
        }
    }

    async fn broker(&self) -> Result<EmbeddedBroker, BusError> {
        self.broker
            .get_or_try_init(|| EmbeddedBroker::open(BrokerConfig::default()))
            .await
            .cloned()
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        Ok(Arc::new(FaultyBus {
            inner: self.broker().await?,
            fault: self.fault,
        }))
    }
}

#[async_trait]
impl QueueFactory for Factory {
    async fn connect(
        &self,
        _queue: &str,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn JobQueue>, QueueError> {
        let inner = EmbeddedQueue::open(&self.broker().await?, policy).await?;
        Ok(Arc::new(FaultyQueue {
            inner,
            fault: self.fault,
        }))
    }
}

fn caps() -> BusCaps {
    BusCaps::new("faulty", features())
}

/// The case's panic message; fails the test if the case passed.
fn fails(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = std::panic::catch_unwind(run).expect_err("the kit passed a faulty adapter");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn a_bus_that_drops_headers_fails_headers_round_trip() {
    let why = fails(|| {
        conformance::run_bus_case(
            "headers_round_trip",
            bus::headers_round_trip,
            || Factory::new(Fault::StripHeaders),
            caps(),
        )
    });
    assert!(why.contains("header"), "{why}");
}

#[test]
fn a_bus_without_a_payload_limit_fails_payload_over_limit() {
    let why = fails(|| {
        conformance::run_bus_case(
            "payload_over_limit",
            bus::payload_over_limit,
            || Factory::new(Fault::NoPayloadLimit),
            caps(),
        )
    });
    assert!(why.contains("gave Ok"), "{why}");
}

#[test]
fn a_bus_redelivering_before_the_ack_wait_fails_no_ack_redelivers() {
    let why = fails(|| {
        conformance::run_bus_case(
            "no_ack_redelivers",
            bus::no_ack_redelivers,
            || Factory::new(Fault::HalveAckWait),
            caps(),
        )
    });
    assert!(why.contains("before the ack wait"), "{why}");
}

#[test]
fn a_queue_without_dedup_fails_dedup_by_id() {
    let why = fails(|| {
        conformance::run_queue_case(
            "dedup_by_id",
            queue::dedup_by_id,
            || Factory::new(Fault::ForgetDedup),
            QueueCaps::new("faulty"),
        )
    });
    assert!(why.contains("same id"), "{why}");
}

#[test]
fn a_queue_whose_extend_does_nothing_fails_extend_keeps_it_reserved() {
    let why = fails(|| {
        conformance::run_queue_case(
            "extend_keeps_it_reserved",
            queue::extend_keeps_it_reserved,
            || Factory::new(Fault::IgnoreExtend),
            QueueCaps::new("faulty"),
        )
    });
    assert!(why.contains("reserved again"), "{why}");
}

#[test]
fn a_bus_whose_in_progress_does_nothing_fails_in_progress_holds_a_delivery() {
    let why = fails(|| {
        conformance::run_bus_case(
            "in_progress_holds_a_delivery",
            bus::in_progress_holds_a_delivery,
            || Factory::new(Fault::IgnoreInProgress),
            caps(),
        )
    });
    assert!(why.contains("did not restart the ack wait"), "{why}");
}

#[test]
fn a_queue_whose_release_spends_an_attempt_fails_release_spends_no_attempt() {
    let why = fails(|| {
        conformance::run_queue_case(
            "release_spends_no_attempt",
            queue::release_spends_no_attempt,
            || Factory::new(Fault::ReleaseSpendsAnAttempt),
            QueueCaps::new("faulty"),
        )
    });
    assert!(why.contains("spent an attempt"), "{why}");
}

#[test]
fn a_skipped_case_says_why() {
    let caps = BusCaps::new(
        "faulty",
        Features {
            headers: false,
            ..features()
        },
    );
    conformance::run_bus_case(
        "headers_round_trip",
        |cx| {
            let run = bus::headers_round_trip(cx);
            async {
                let v = run.await;
                assert!(matches!(&v, Verdict::Skip(why) if why.contains("headers")));
                v
            }
        },
        || Factory::new(Fault::StripHeaders),
        caps,
    );
}
