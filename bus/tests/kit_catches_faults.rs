//! The conformance kit fails adapters that break the contract: each test wraps
//! the embedded broker or queue with one fault and expects the case that
//! names that fault to panic. Every case of the kit has at least one such
//! test, `…_fails_<case>`, and [`every_case_catches_a_fault`] keeps it so.
//! (Test names avoid "conformance" so the matrix script skips them, and the
//! cases run here are kept out of the matrix's report.)

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::conformance::{
    self, BusCaps, BusFactory, QueueCaps, QueueFactory, Verdict, bus, queue,
};
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{
    AckKind, Acker, Bus, BusError, DeadJob, DeadLetter, Delivery, Features, GroupOptions, Job,
    JobQueue, Message, NewJob, QueueError, QueueStats, RetryOutcome, RetryPolicy, StreamConfig,
    Subscription, header,
};
use tokio::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    // The bus.
    /// `features()` reports another payload limit than the adapter has.
    MisreportFeatures,
    StripHeaders,
    NoPayloadLimit,
    /// Payloads over 32 KiB are cut to 32 KiB on the way.
    TruncateLargePayloads,
    HalveAckWait,
    /// Groups redeliver without end: `max_deliveries` is ignored.
    IgnoreMaxDeliveries,
    /// Dead letters are made but never listed.
    LoseDeadLetters,
    /// A member that leaves keeps its deliveries until their ack wait runs out.
    KeepLeftMembersDeliveries,
    /// Every message is published twice (a retried publish without dedup).
    PublishTwice,
    /// Claims durability, but a restart (or a crash) comes back empty.
    ForgetOnRestart,
    /// Claims durability, but a crash loses the acks: acked messages come back.
    AcksLostInCrash,
    IgnoreInProgress,
    /// A plain subscriber starts at the beginning of the stream, like a new group.
    PlainSubscribersReplay,
    /// A new group starts at the end of the stream, like a plain subscriber.
    GroupsStartAtTheEnd,
    /// A group's subject filter is widened to the whole stream.
    WidenGroupFilter,
    /// A trailing `*` matches any number of tokens, like `>`.
    StarMatchesMany,
    /// Two messages of one key are published in swapped order.
    ReorderPerKey,
    /// Every group is the same group, whatever its name.
    IgnoreGroupName,
    /// The second member of a group never gets anything.
    SecondMemberIdle,
    /// `nack` acks.
    NackIsAck,
    /// `nack(delay)` redelivers at once.
    NackIgnoresDelay,
    /// A delivery dropped without a decision counts as acked.
    DropAcks,
    /// `ensure_stream` of an existing stream loses its messages.
    EnsureStreamRecreates,
    /// A publish that overlaps another one is lost (a race in the client).
    ConcurrentPublishesCollide,
    /// `close` does nothing.
    CloseDoesNothing,
    // The job queue.
    ForgetDedup,
    IgnoreExtend,
    ReleaseSpendsAnAttempt,
    /// `ack` does nothing: the job stays reserved.
    AckDoesNothing,
    /// `reserve` returns at once instead of waiting for a job.
    ReserveDoesNotWait,
    /// Every queue name is one queue.
    OneQueueForAll,
    /// A reservation never expires.
    ReservationsNeverExpire,
    /// Dead jobs are made but never listed.
    LoseDeadJobs,
    /// `requeue_dead` says yes and does nothing.
    RequeueDoesNothing,
    /// `stats` always reports an empty queue.
    StatsLie,
    /// Now and then a job that another worker holds (or held) is handed out again.
    HandOutTwice,
    /// `reserve_many` takes one job, whatever the batch size.
    ReserveManyTakesOne,
}

/// State that the clients of one faulty broker share.
#[derive(Default)]
struct Shared {
    /// Members per (subject, group), for [`Fault::SecondMemberIdle`].
    members: Mutex<HashMap<(String, String), usize>>,
    /// The message held back per key, for [`Fault::ReorderPerKey`].
    held_by_key: Mutex<HashMap<String, Message>>,
    /// Streams ensured so far and the event ids published, and the ids an
    /// `ensure_stream` again lost, for [`Fault::EnsureStreamRecreates`].
    ensured: Mutex<HashSet<String>>,
    published: Mutex<Vec<String>>,
    lost: Mutex<HashSet<String>>,
    /// Publishes under way, for [`Fault::ConcurrentPublishesCollide`].
    publishing: AtomicUsize,
    /// The last job reserved and how many reserves were made, for [`Fault::HandOutTwice`].
    last_job: Mutex<Option<Job>>,
    reserves: AtomicUsize,
    /// Messages acked since the last crash, for [`Fault::AcksLostInCrash`].
    acked: Mutex<Vec<Message>>,
}

struct FaultyBus {
    inner: EmbeddedBroker,
    fault: Fault,
    shared: Arc<Shared>,
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

/// Aborts a relay task (and so drops the subscription it reads) when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `inner`'s deliveries through `f` (which may drop them), on a task that
/// ends with the returned subscription.
fn relay(
    mut inner: Subscription,
    mut f: impl FnMut(Delivery) -> Option<Delivery> + Send + 'static,
) -> Subscription {
    let (tx, rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        while let Some(d) = inner.next().await {
            if let Some(d) = f(d)
                && tx.send(d).await.is_err()
            {
                break;
            }
        }
    });
    Subscription::new(rx, Some(Box::new(AbortOnDrop(task))))
}

/// Settles the real delivery the way `fault` does.
struct FaultyAcker {
    inner: Delivery,
    fault: Fault,
}

impl Acker for FaultyAcker {
    fn settle(&self, kind: AckKind) {
        match (self.fault, kind) {
            (Fault::NackIsAck, AckKind::Nack(_)) | (_, AckKind::Ack) => self.inner.ack(),
            (Fault::NackIgnoresDelay, AckKind::Nack(_)) => self.inner.nack(Duration::ZERO),
            (_, AckKind::Nack(delay)) => self.inner.nack(delay),
        };
    }

    fn in_progress(&self) {
        if self.fault != Fault::IgnoreInProgress {
            self.inner.in_progress();
        }
    }
}

impl Drop for FaultyAcker {
    fn drop(&mut self) {
        if self.fault == Fault::DropAcks {
            // Acked unless it was nacked already.
            self.inner.ack();
        }
    }
}

/// Acks the real delivery and remembers its message.
struct RecordingAcker {
    inner: Delivery,
    shared: Arc<Shared>,
}

impl Acker for RecordingAcker {
    fn settle(&self, kind: AckKind) {
        match kind {
            AckKind::Ack => {
                if self.inner.ack() {
                    let m = self.inner.message.clone();
                    self.shared.acked.lock().expect("lock").push(m);
                }
            }
            AckKind::Nack(delay) => {
                self.inner.nack(delay);
            }
        }
    }

    fn in_progress(&self) {
        self.inner.in_progress();
    }
}

/// The same delivery, settled through a [`FaultyAcker`].
fn faulty_delivery(d: Delivery, fault: Fault) -> Delivery {
    let (message, attempt) = (d.message.clone(), d.attempt);
    Delivery::with_acker(message, attempt, Arc::new(FaultyAcker { inner: d, fault }))
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

/// A subscription that never delivers and never ends.
fn idle() -> Subscription {
    let (tx, rx) = mpsc::channel::<Delivery>(1);
    Subscription::new(rx, Some(Box::new(tx)))
}

/// `a.b.*` as `a.b.>`.
fn star_as_many(subject: &str) -> String {
    match subject.strip_suffix(".*") {
        Some(head) => format!("{head}.>"),
        None => subject.to_string(),
    }
}

/// `conf.<id>.tail` as `conf.<id>.>`: the whole stream of the case.
fn whole_stream(subject: &str) -> String {
    let mut tokens: Vec<&str> = subject.split('.').take(2).collect();
    tokens.push(">");
    tokens.join(".")
}

impl FaultyBus {
    async fn publish_keyed_out_of_order(&self, message: Message) -> Result<(), BusError> {
        let Some(key) = message.key.clone() else {
            return self.inner.publish(message).await;
        };
        let earlier = self.shared.held_by_key.lock().expect("lock").remove(&key);
        match earlier {
            Some(earlier) => {
                self.inner.publish(message).await?;
                self.inner.publish(earlier).await
            }
            None => {
                let id = message.header(header::EVENT_ID).map(str::to_string);
                self.shared
                    .held_by_key
                    .lock()
                    .expect("lock")
                    .insert(key.clone(), message);
                // The last of a key has no successor to swap with: it goes
                // out a little later by itself.
                let (inner, shared) = (self.inner.clone(), self.shared.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let m = {
                        let mut held = shared.held_by_key.lock().expect("lock");
                        let same = held
                            .get(&key)
                            .is_some_and(|m| m.header(header::EVENT_ID).map(str::to_string) == id);
                        if same { held.remove(&key) } else { None }
                    };
                    if let Some(m) = m {
                        let _ = inner.publish(m).await;
                    }
                });
                Ok(())
            }
        }
    }

    /// Drops deliveries whose message an `ensure_stream` again lost.
    fn without_lost(&self, sub: Subscription) -> Subscription {
        let shared = self.shared.clone();
        relay(sub, move |d| {
            let lost = d
                .message
                .header(header::EVENT_ID)
                .is_some_and(|id| shared.lost.lock().expect("lock").contains(id));
            if lost {
                d.ack();
                None
            } else {
                Some(d)
            }
        })
    }
}

#[async_trait]
impl Bus for FaultyBus {
    fn features(&self) -> Features {
        let declared = features_with(matches!(
            self.fault,
            Fault::ForgetOnRestart | Fault::AcksLostInCrash
        ));
        if self.fault == Fault::MisreportFeatures {
            return Features {
                max_payload: 2 * DECLARED_MAX,
                ..declared
            };
        }
        declared
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        if self.fault == Fault::EnsureStreamRecreates {
            let again = !self
                .shared
                .ensured
                .lock()
                .expect("lock")
                .insert(config.name.clone());
            if again {
                let published = std::mem::take(&mut *self.shared.published.lock().expect("lock"));
                self.shared.lost.lock().expect("lock").extend(published);
            }
        }
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
        match self.fault {
            Fault::TruncateLargePayloads if message.payload.len() > 32 * 1024 => {
                message.payload.truncate(32 * 1024);
            }
            Fault::PublishTwice => self.inner.publish(message.clone()).await?,
            Fault::ReorderPerKey => return self.publish_keyed_out_of_order(message).await,
            Fault::EnsureStreamRecreates => {
                if let Some(id) = message.header(header::EVENT_ID) {
                    self.shared.published.lock().expect("lock").push(id.into());
                }
            }
            Fault::ConcurrentPublishesCollide => {
                let others = self.shared.publishing.fetch_add(1, Ordering::AcqRel);
                let result = if others > 0 {
                    // Lost, and reported as sent.
                    Ok(())
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    self.inner.publish(message).await
                };
                self.shared.publishing.fetch_sub(1, Ordering::AcqRel);
                return result;
            }
            _ => {}
        }
        self.inner.publish(message).await
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        match self.fault {
            Fault::PlainSubscribersReplay => {
                let group = format!("plain-{}", uuid::Uuid::new_v4().simple());
                let options = GroupOptions {
                    ack_wait: Duration::from_secs(30),
                    max_deliveries: 100,
                    max_in_flight: 64,
                };
                self.inner.subscribe_group(subject, &group, options).await
            }
            Fault::StarMatchesMany => self.inner.subscribe(&star_as_many(subject)).await,
            Fault::EnsureStreamRecreates => {
                Ok(self.without_lost(self.inner.subscribe(subject).await?))
            }
            _ => self.inner.subscribe(subject).await,
        }
    }

    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        mut options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        let mut subject = subject.to_string();
        let mut group = group.to_string();
        match self.fault {
            Fault::HalveAckWait => options.ack_wait /= 2,
            Fault::IgnoreMaxDeliveries => options.max_deliveries = u32::MAX,
            Fault::GroupsStartAtTheEnd => return self.inner.subscribe(&subject).await,
            Fault::WidenGroupFilter => subject = whole_stream(&subject),
            Fault::StarMatchesMany => subject = star_as_many(&subject),
            Fault::IgnoreGroupName => group = "the-one-group".into(),
            Fault::SecondMemberIdle => {
                let mut members = self.shared.members.lock().expect("lock");
                let n = members.entry((subject.clone(), group.clone())).or_default();
                *n += 1;
                if *n == 2 {
                    return Ok(idle());
                }
            }
            _ => {}
        }
        let sub = self
            .inner
            .subscribe_group(&subject, &group, options)
            .await?;
        let fault = self.fault;
        Ok(match fault {
            Fault::KeepLeftMembersDeliveries => never_leaves(sub),
            Fault::IgnoreInProgress
            | Fault::NackIsAck
            | Fault::NackIgnoresDelay
            | Fault::DropAcks => relay(sub, move |d| Some(faulty_delivery(d, fault))),
            Fault::EnsureStreamRecreates => self.without_lost(sub),
            Fault::AcksLostInCrash => {
                let shared = self.shared.clone();
                relay(sub, move |d| {
                    let (message, attempt) = (d.message.clone(), d.attempt);
                    let shared = shared.clone();
                    let acker = Arc::new(RecordingAcker { inner: d, shared });
                    Some(Delivery::with_acker(message, attempt, acker))
                })
            }
            _ => sub,
        })
    }

    async fn check(&self) -> Result<(), BusError> {
        if self.fault == Fault::CloseDoesNothing {
            return Ok(());
        }
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
        if self.fault == Fault::CloseDoesNothing {
            return;
        }
        self.inner.close().await
    }
}

struct FaultyQueue {
    inner: EmbeddedQueue,
    fault: Fault,
    shared: Arc<Shared>,
}

impl FaultyQueue {
    fn queue_name<'a>(&self, queue: &'a str) -> &'a str {
        if self.fault == Fault::OneQueueForAll {
            "the_one_queue"
        } else {
            queue
        }
    }
}

#[async_trait]
impl JobQueue for FaultyQueue {
    async fn enqueue(&self, mut job: NewJob) -> Result<bool, QueueError> {
        if self.fault == Fault::ForgetDedup {
            job.id = format!("{}-{}", job.id, uuid::Uuid::new_v4().simple());
        }
        job.queue = self.queue_name(&job.queue).to_string();
        self.inner.enqueue(job).await
    }

    async fn reserve(
        &self,
        queue: &str,
        mut visibility: Duration,
        mut wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        match self.fault {
            Fault::ReserveDoesNotWait => wait = Duration::ZERO,
            Fault::ReservationsNeverExpire => visibility = Duration::from_secs(3600),
            Fault::HandOutTwice => {
                let n = self.shared.reserves.fetch_add(1, Ordering::AcqRel);
                if n % 7 == 6
                    && let Some(again) = self.shared.last_job.lock().expect("lock").take()
                {
                    return Ok(Some(again));
                }
            }
            _ => {}
        }
        let job = self
            .inner
            .reserve(self.queue_name(queue), visibility, wait)
            .await?;
        if self.fault == Fault::HandOutTwice
            && let Some(j) = &job
        {
            *self.shared.last_job.lock().expect("lock") = Some(j.clone());
        }
        Ok(job)
    }

    async fn reserve_many(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        if self.fault == Fault::ReserveManyTakesOne {
            return Ok(self
                .inner
                .reserve(queue, visibility, wait)
                .await?
                .into_iter()
                .collect());
        }
        self.inner
            .reserve_many(self.queue_name(queue), max, visibility, wait)
            .await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        match self.fault {
            Fault::AckDoesNothing => Ok(()),
            // The second holder's ack of a job handed out twice.
            Fault::HandOutTwice => {
                let _ = self.inner.ack(job).await;
                Ok(())
            }
            _ => self.inner.ack(job).await,
        }
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
        if self.fault == Fault::StatsLie {
            return Ok(QueueStats::default());
        }
        self.inner.stats(self.queue_name(queue)).await
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        if self.fault == Fault::LoseDeadJobs {
            return Ok(Vec::new());
        }
        self.inner.dead_letters(self.queue_name(queue), limit).await
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        if self.fault == Fault::RequeueDoesNothing {
            return Ok(true);
        }
        self.inner.requeue_dead(self.queue_name(queue), id).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.inner.check().await
    }
}

struct Factory {
    fault: Fault,
    shared: Arc<Shared>,
    broker: tokio::sync::Mutex<Option<EmbeddedBroker>>,
}

impl Factory {
    fn new(fault: Fault) -> Self {
        Self {
            fault,
            shared: Arc::default(),
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

    /// In memory: whatever the broker held is gone afterwards.
    async fn start_over(&self) -> Result<(), BusError> {
        let mut slot = self.broker.lock().await;
        if let Some(old) = slot.take() {
            old.close().await;
        }
        *slot = Some(EmbeddedBroker::open(BrokerConfig::default()).await?);
        Ok(())
    }
}

#[async_trait]
impl BusFactory for Factory {
    async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        Ok(Arc::new(FaultyBus {
            inner: self.broker().await?,
            fault: self.fault,
            shared: self.shared.clone(),
        }))
    }

    async fn restart_broker(&self) -> Result<(), BusError> {
        self.start_over().await
    }

    async fn crash_broker(&self) -> Result<(), BusError> {
        if self.fault == Fault::AcksLostInCrash {
            // The broker keeps its messages; what was acked is undone, here
            // by publishing it again.
            let broker = self.broker().await?;
            let acked = std::mem::take(&mut *self.shared.acked.lock().expect("lock"));
            for m in acked {
                broker.publish(m).await?;
            }
            return Ok(());
        }
        self.start_over().await
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
            shared: self.shared.clone(),
        }))
    }

    async fn restart(&self) -> Result<(), QueueError> {
        Ok(self.start_over().await?)
    }

    async fn crash(&self) -> Result<(), QueueError> {
        Ok(self.start_over().await?)
    }
}

fn caps() -> BusCaps {
    BusCaps::new("faulty", features()).dead_letters(true)
}

fn queue_caps() -> QueueCaps {
    QueueCaps::new("faulty")
}

/// Runs bus case `name` on a bus with `fault` and `caps`; returns why it failed.
fn bus_case_fails<F, Fut>(name: &'static str, case: F, fault: Fault, caps: BusCaps) -> String
where
    F: FnOnce(Arc<conformance::BusCx>) -> Fut + std::panic::UnwindSafe,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    fails(move || conformance::run_bus_case(name, case, move || Factory::new(fault), caps))
}

/// Runs queue case `name` on a queue with `fault` and `caps`; returns why it failed.
fn queue_case_fails<F, Fut>(name: &'static str, case: F, fault: Fault, caps: QueueCaps) -> String
where
    F: FnOnce(Arc<conformance::QueueCx>) -> Fut + std::panic::UnwindSafe,
    Fut: std::future::Future<Output = Verdict> + Send + 'static,
{
    fails(move || conformance::run_queue_case(name, case, move || Factory::new(fault), caps))
}

/// The case's panic message; fails the test if the case passed.
fn fails(run: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let err = conformance::unreported(|| std::panic::catch_unwind(run))
        .expect_err("the kit passed a faulty adapter");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The cases between `// <suite> CASES BEGIN` and `// <suite> CASES END`.
fn listed_cases(kit: &str, suite: &str) -> Vec<String> {
    let begin = format!("// {suite} CASES BEGIN");
    let end = format!("// {suite} CASES END");
    let start = kit.find(&begin).map(|i| i + begin.len());
    let stop = kit.find(&end);
    let (Some(start), Some(stop)) = (start, stop) else {
        panic!("the kit has no {begin} … {end} list");
    };
    kit[start..stop]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A new case cannot be added without a fault it is shown to catch: every
/// case of both lists has a test here named `…_fails_<case>`.
#[test]
fn every_case_catches_a_fault() {
    let kit = include_str!("../src/conformance/mod.rs");
    let tests = include_str!("kit_catches_faults.rs");
    let mut missing = Vec::new();
    for suite in ["BUS", "QUEUE"] {
        let cases = listed_cases(kit, suite);
        assert!(cases.len() > 5, "{suite}: only {cases:?} listed");
        for case in cases {
            let test = format!("_fails_{case}() {{");
            if !tests.contains(&test) {
                missing.push(case);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cases without a `fn a_<faulty thing>_fails_<case>()` test in bus/tests/kit_catches_faults.rs: {missing:?}"
    );
}

// The bus cases, in the order of the kit's list.

#[test]
fn a_bus_that_misreports_its_features_fails_features_match_the_adapter() {
    let why = bus_case_fails(
        "features_match_the_adapter",
        bus::features_match_the_adapter,
        Fault::MisreportFeatures,
        caps(),
    );
    assert!(why.contains("other features"), "{why}");
}

#[test]
fn a_bus_that_delivers_twice_fails_publish_subscribe() {
    let why = bus_case_fails(
        "publish_subscribe",
        bus::publish_subscribe,
        Fault::PublishTwice,
        caps().exactly_once(true),
    );
    assert!(why.contains("duplicates"), "{why}");
}

#[test]
fn a_bus_whose_plain_subscribers_replay_the_stream_fails_plain_subscribers_fan_out() {
    let why = bus_case_fails(
        "plain_subscribers_fan_out",
        bus::plain_subscribers_fan_out,
        Fault::PlainSubscribersReplay,
        caps(),
    );
    assert!(why.contains("published before it subscribed"), "{why}");
}

#[test]
fn a_bus_that_widens_group_filters_fails_many_subjects() {
    let why = bus_case_fails(
        "many_subjects",
        bus::many_subjects,
        Fault::WidenGroupFilter,
        caps(),
    );
    assert!(why.contains("the group of subject"), "{why}");
}

#[test]
fn a_bus_whose_star_matches_many_tokens_fails_wildcard_subjects() {
    let why = bus_case_fails(
        "wildcard_subjects",
        bus::wildcard_subjects,
        Fault::StarMatchesMany,
        caps().wildcards(true),
    );
    assert!(why.contains("plain on eu.* got"), "{why}");
}

#[test]
fn a_bus_that_reorders_a_key_fails_order_per_key() {
    let why = bus_case_fails(
        "order_per_key",
        bus::order_per_key,
        Fault::ReorderPerKey,
        caps(),
    );
    assert!(why.contains("out of publish order"), "{why}");
}

#[test]
fn a_bus_that_ignores_group_names_fails_fan_out_across_groups() {
    let why = bus_case_fails(
        "fan_out_across_groups",
        bus::fan_out_across_groups,
        Fault::IgnoreGroupName,
        caps(),
    );
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn a_bus_whose_second_member_idles_fails_balance_within_group() {
    let why = bus_case_fails(
        "balance_within_group",
        bus::balance_within_group,
        Fault::SecondMemberIdle,
        caps(),
    );
    assert!(why.contains("one member of the group got all"), "{why}");
}

#[test]
fn a_bus_redelivering_before_the_ack_wait_fails_no_ack_redelivers() {
    let why = bus_case_fails(
        "no_ack_redelivers",
        bus::no_ack_redelivers,
        Fault::HalveAckWait,
        caps(),
    );
    assert!(why.contains("before the ack wait"), "{why}");
}

#[test]
fn a_bus_whose_nack_acks_fails_nack_redelivers() {
    let why = bus_case_fails(
        "nack_redelivers",
        bus::nack_redelivers,
        Fault::NackIsAck,
        caps(),
    );
    assert!(why.contains("the redelivery after nack"), "{why}");
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
fn a_bus_whose_nack_ignores_the_delay_fails_nack_with_delay() {
    let why = bus_case_fails(
        "nack_with_delay",
        bus::nack_with_delay,
        Fault::NackIgnoresDelay,
        caps(),
    );
    assert!(why.contains("before the delay"), "{why}");
}

#[test]
fn a_bus_whose_in_progress_does_nothing_fails_in_progress_holds_a_delivery() {
    let why = bus_case_fails(
        "in_progress_holds_a_delivery",
        bus::in_progress_holds_a_delivery,
        Fault::IgnoreInProgress,
        caps(),
    );
    assert!(why.contains("did not restart the ack wait"), "{why}");
}

#[test]
fn a_bus_that_acks_dropped_deliveries_fails_ack_after_subscription_closed() {
    let why = bus_case_fails(
        "ack_after_subscription_closed",
        bus::ack_after_subscription_closed,
        Fault::DropAcks,
        caps(),
    );
    assert!(why.contains("missing"), "{why}");
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

fn forgetful_caps() -> BusCaps {
    BusCaps::new("faulty", features_with(true))
        .broker_restart(true)
        .broker_crash(true)
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
fn a_bus_whose_new_groups_start_at_the_end_fails_messages_before_group_first_subscribes() {
    let why = bus_case_fails(
        "messages_before_group_first_subscribes",
        bus::messages_before_group_first_subscribes,
        Fault::GroupsStartAtTheEnd,
        caps(),
    );
    assert!(why.contains("the new group"), "{why}");
}

#[test]
fn a_bus_whose_ensure_stream_recreates_it_fails_ensure_stream_is_idempotent() {
    let why = bus_case_fails(
        "ensure_stream_is_idempotent",
        bus::ensure_stream_is_idempotent,
        Fault::EnsureStreamRecreates,
        caps(),
    );
    assert!(why.contains("after ensure_stream"), "{why}");
}

#[test]
fn a_bus_that_drops_headers_fails_headers_round_trip() {
    let why = bus_case_fails(
        "headers_round_trip",
        bus::headers_round_trip,
        Fault::StripHeaders,
        caps(),
    );
    assert!(why.contains("header"), "{why}");
}

#[test]
fn a_bus_that_truncates_large_payloads_fails_payload_near_limit() {
    let why = bus_case_fails(
        "payload_near_limit",
        bus::payload_near_limit,
        Fault::TruncateLargePayloads,
        caps(),
    );
    assert!(why.contains("changed on the way"), "{why}");
}

#[test]
fn a_bus_without_a_payload_limit_fails_payload_over_limit() {
    let why = bus_case_fails(
        "payload_over_limit",
        bus::payload_over_limit,
        Fault::NoPayloadLimit,
        caps(),
    );
    assert!(why.contains("gave Ok"), "{why}");
}

#[test]
fn a_bus_that_loses_colliding_publishes_fails_concurrent_publishers_and_subscribers() {
    let why = bus_case_fails(
        "concurrent_publishers_and_subscribers",
        bus::concurrent_publishers_and_subscribers,
        Fault::ConcurrentPublishesCollide,
        caps(),
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

#[test]
fn a_bus_that_forgets_on_a_crash_fails_durable_resume_after_crash() {
    let why = bus_case_fails(
        "durable_resume_after_crash",
        bus::durable_resume_after_crash,
        Fault::ForgetOnRestart,
        forgetful_caps(),
    );
    assert!(why.contains("missing"), "{why}");
}

#[test]
fn a_bus_that_loses_acks_in_a_crash_fails_durable_resume_after_crash() {
    let why = bus_case_fails(
        "durable_resume_after_crash",
        bus::durable_resume_after_crash,
        Fault::AcksLostInCrash,
        forgetful_caps(),
    );
    assert!(
        why.contains("acked messages came back after the crash"),
        "{why}"
    );
}

#[test]
fn a_bus_whose_close_does_nothing_fails_close_ends_subscriptions() {
    let why = bus_case_fails(
        "close_ends_subscriptions",
        bus::close_ends_subscriptions,
        Fault::CloseDoesNothing,
        caps(),
    );
    assert!(why.contains("did not end after close"), "{why}");
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
    conformance::unreported(|| {
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
        )
    });
}

// The queue cases, in the order of the kit's list.

#[test]
fn a_queue_whose_ack_does_nothing_fails_enqueue_reserve_ack() {
    let why = queue_case_fails(
        "enqueue_reserve_ack",
        queue::enqueue_reserve_ack,
        Fault::AckDoesNothing,
        queue_caps(),
    );
    assert!(why.contains("running: 1"), "{why}");
}

#[test]
fn a_queue_whose_reserve_does_not_wait_fails_reserve_waits_for_a_job() {
    let why = queue_case_fails(
        "reserve_waits_for_a_job",
        queue::reserve_waits_for_a_job,
        Fault::ReserveDoesNotWait,
        queue_caps(),
    );
    assert!(why.contains("the late job"), "{why}");
}

#[test]
fn a_queue_without_dedup_fails_dedup_by_id() {
    let why = queue_case_fails(
        "dedup_by_id",
        queue::dedup_by_id,
        Fault::ForgetDedup,
        queue_caps(),
    );
    assert!(why.contains("same id"), "{why}");
}

#[test]
fn a_queue_that_is_one_queue_for_all_names_fails_queues_are_isolated() {
    let why = queue_case_fails(
        "queues_are_isolated",
        queue::queues_are_isolated,
        Fault::OneQueueForAll,
        queue_caps(),
    );
    assert!(why.contains("another queue is another job"), "{why}");
}

#[test]
fn a_queue_whose_reservations_never_expire_fails_visibility_timeout_reclaims() {
    let why = queue_case_fails(
        "visibility_timeout_reclaims",
        queue::visibility_timeout_reclaims,
        Fault::ReservationsNeverExpire,
        queue_caps(),
    );
    assert!(why.contains("the reclaimed job"), "{why}");
}

#[test]
fn a_queue_whose_extend_does_nothing_fails_extend_keeps_it_reserved() {
    let why = queue_case_fails(
        "extend_keeps_it_reserved",
        queue::extend_keeps_it_reserved,
        Fault::IgnoreExtend,
        queue_caps(),
    );
    assert!(why.contains("reserved again"), "{why}");
}

#[test]
fn a_queue_that_loses_its_dead_jobs_fails_fail_retries_then_dead() {
    let why = queue_case_fails(
        "fail_retries_then_dead",
        queue::fail_retries_then_dead,
        Fault::LoseDeadJobs,
        queue_caps(),
    );
    assert!(why.contains("dead letters"), "{why}");
}

#[test]
fn a_queue_whose_requeue_does_nothing_fails_requeue_dead_runs_again() {
    let why = queue_case_fails(
        "requeue_dead_runs_again",
        queue::requeue_dead_runs_again,
        Fault::RequeueDoesNothing,
        queue_caps(),
    );
    assert!(why.contains("the requeued job"), "{why}");
}

#[test]
fn a_queue_whose_stats_lie_fails_stats_count() {
    let why = queue_case_fails(
        "stats_count",
        queue::stats_count,
        Fault::StatsLie,
        queue_caps(),
    );
    assert!(why.contains("left: (0, 0, 0, 0)"), "{why}");
}

#[test]
fn a_queue_that_hands_a_job_out_twice_fails_concurrent_workers_never_share_a_job() {
    let why = queue_case_fails(
        "concurrent_workers_never_share_a_job",
        queue::concurrent_workers_never_share_a_job,
        Fault::HandOutTwice,
        queue_caps(),
    );
    assert!(
        why.contains("more than once")
            || why.contains("two workers")
            || why.contains("jobs that ran"),
        "{why}"
    );
}

fn forgetful_queue_caps() -> QueueCaps {
    queue_caps().durable(true).restart(true).crash(true)
}

#[test]
fn a_queue_that_forgets_on_restart_fails_restart_keeps_queued_work() {
    let why = queue_case_fails(
        "restart_keeps_queued_work",
        queue::restart_keeps_queued_work,
        Fault::ForgetOnRestart,
        forgetful_queue_caps(),
    );
    assert!(why.contains("jobs after the restart"), "{why}");
}

#[test]
fn a_queue_that_forgets_on_a_crash_fails_jobs_kept_after_crash() {
    let why = queue_case_fails(
        "jobs_kept_after_crash",
        queue::jobs_kept_after_crash,
        Fault::ForgetOnRestart,
        forgetful_queue_caps(),
    );
    assert!(why.contains("jobs after the crash"), "{why}");
}

#[test]
fn a_queue_whose_release_spends_an_attempt_fails_release_spends_no_attempt() {
    let why = queue_case_fails(
        "release_spends_no_attempt",
        queue::release_spends_no_attempt,
        Fault::ReleaseSpendsAnAttempt,
        queue_caps(),
    );
    assert!(why.contains("spent an attempt"), "{why}");
}

#[test]
fn a_queue_whose_reserve_many_takes_one_fails_reserve_many_takes_a_batch() {
    let why = queue_case_fails(
        "reserve_many_takes_a_batch",
        queue::reserve_many_takes_a_batch,
        Fault::ReserveManyTakesOne,
        queue_caps(),
    );
    assert!(why.contains("three asked for"), "{why}");
}
