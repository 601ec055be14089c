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
    AckKind, Acker, Bus, BusError, DeadJob, DeadLetter, Delivery, Features, GroupOptions, Job,
    JobQueue, Message, NewJob, QueueError, QueueStats, RetryOutcome, RetryPolicy, StreamConfig,
    Subscription,
};
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    StripHeaders,
    NoPayloadLimit,
    HalveAckWait,
    ForgetDedup,
    IgnoreExtend,
    /// Groups redeliver without end: `max_deliveries` is ignored.
    IgnoreMaxDeliveries,
    /// Dead letters are made but never listed.
    LoseDeadLetters,
    /// A member that leaves keeps its deliveries until their ack wait runs out.
    KeepLeftMembersDeliveries,
    /// Every message is published twice (a retried publish without dedup).
    PublishTwice,
    /// Claims durability, but a restart comes back empty.
    ForgetOnRestart,
    IgnoreInProgress,
    ReleaseSpendsAnAttempt,
}

struct FaultyBus {
    inner: EmbeddedBroker,
    fault: Fault,
}

const DECLARED_MAX: usize = 64 * 1024;

fn features() -> Features {
    features_with(false)
}

fn features_with(durable: bool) -> Features {
    Features {
        durable,
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
        features_with(self.fault == Fault::ForgetOnRestart)
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
        if self.fault == Fault::PublishTwice {
            self.inner.publish(message.clone()).await?;
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
        if self.fault == Fault::IgnoreMaxDeliveries {
            options.max_deliveries = u32::MAX;
        }
        let sub = self.inner.subscribe_group(subject, group, options).await?;
        if self.fault == Fault::KeepLeftMembersDeliveries {
            return Ok(never_leaves(sub));
        }
        if self.fault == Fault::IgnoreInProgress {
            return Ok(deaf_to_in_progress(sub));
        }
        Ok(sub)
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }

    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        if self.fault == Fault::LoseDeadLetters {
            return Ok(Vec::new());
        }
        self.inner.dead_letters(stream, limit).await
    }

    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.inner.replay_dead(stream, id).await
    }

    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.inner.purge_dead(stream, id).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// Hands `inner`'s deliveries on, but keeps `inner` (the member) open after
/// the subscription is dropped, so it never gives back what it holds.
fn never_leaves(mut inner: Subscription) -> Subscription {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(d) = inner.next().await {
            if tx.send(d).await.is_err() {
                break;
            }
        }
        // Stays a member until the case's runtime ends.
        std::future::pending::<()>().await;
        drop(inner);
    });
    Subscription::new(rx, None)
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
    broker: tokio::sync::Mutex<Option<EmbeddedBroker>>,
}

impl Factory {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            broker: tokio::sync::Mutex::new(None),
        }
    }

    async fn broker(&self) -> Result<EmbeddedBroker, BusError> {
        let mut slot = self.broker.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let b = EmbeddedBroker::open(BrokerConfig::default()).await?;
        *slot = Some(b.clone());
        Ok(b)
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

    /// In memory: whatever the broker held is gone afterwards.
    async fn restart_broker(&self) -> Result<(), BusError> {
        let mut slot = self.broker.lock().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        *slot = Some(EmbeddedBroker::open(BrokerConfig::default()).await?);
        Ok(())
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
    BusCaps::new("faulty", features()).dead_letters(true)
}

/// Runs bus case `name` on a bus with `fault` and `caps`; returns why it failed.
fn bus_case_fails<F, Fut>(name: &'static str, case: F, fault: Fault, caps: BusCaps) -> String
where
    F: FnOnce(Arc<conformance::BusCx>) -> Fut + std::panic::UnwindSafe,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    fails(move || conformance::run_bus_case(name, case, move || Factory::new(fault), caps))
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

#[test]
fn a_bus_that_ignores_max_deliveries_fails_max_deliveries_ends_redelivery() {
    let why = bus_case_fails(
        "max_deliveries_ends_redelivery",
        bus::max_deliveries_ends_redelivery,
        Fault::IgnoreMaxDeliveries,
        caps(),
    );
    assert!(why.contains("delivered a third time"), "{why}");
}

#[test]
fn a_bus_that_loses_its_dead_letters_fails_max_deliveries_ends_redelivery() {
    let why = bus_case_fails(
        "max_deliveries_ends_redelivery",
        bus::max_deliveries_ends_redelivery,
        Fault::LoseDeadLetters,
        caps(),
    );
    assert!(why.contains("not in the dead letters"), "{why}");
}

#[test]
fn a_bus_whose_leaving_members_keep_their_deliveries_fails_close_with_deliveries_in_flight() {
    let why = bus_case_fails(
        "close_with_deliveries_in_flight",
        bus::close_with_deliveries_in_flight,
        Fault::KeepLeftMembersDeliveries,
        caps(),
    );
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn a_bus_that_delivers_twice_fails_publish_subscribe_when_exactly_once() {
    let why = bus_case_fails(
        "publish_subscribe",
        bus::publish_subscribe,
        Fault::PublishTwice,
        caps().exactly_once(true),
    );
    assert!(why.contains("duplicates"), "{why}");
}

fn forgetful_caps() -> BusCaps {
    BusCaps::new("faulty", features_with(true)).broker_restart(true)
}

#[test]
fn a_bus_that_forgets_on_restart_fails_durable_resume_after_restart() {
    let why = bus_case_fails(
        "durable_resume_after_restart",
        bus::durable_resume_after_restart,
        Fault::ForgetOnRestart,
        forgetful_caps(),
    );
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn a_bus_that_forgets_on_restart_fails_broker_restart() {
    let why = bus_case_fails(
        "broker_restart",
        bus::broker_restart,
        Fault::ForgetOnRestart,
        forgetful_caps(),
    );
    assert!(why.contains("missing"), "{why}");
}
