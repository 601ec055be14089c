use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BusError, Message, QueueError, Subscription};

/// What an adapter can promise; the conformance kit skips cases a flag rules out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Messages of a stream survive a broker or process restart.
    pub durable: bool,
    /// Messages with the same key are delivered in publish order to a group.
    pub ordered_per_key: bool,
    /// `subscribe_group` balances deliveries across members of a group.
    pub consumer_groups: bool,
    /// `nack(delay)` holds the redelivery back for the delay.
    pub redelivery_delay: bool,
    /// Headers travel with the message.
    pub headers: bool,
    /// Largest payload accepted by `publish`.
    pub max_payload: usize,
}

/// A durable stream: the messages of its subjects are kept for groups to consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// `[A-Za-z0-9_-]+`; a file name for the embedded broker, a topic prefix elsewhere.
    pub name: String,
    /// Subjects (wildcards allowed) whose messages the stream keeps.
    pub subjects: Vec<String>,
    /// Messages older than this are dropped even if not yet consumed.
    pub max_age: Duration,
}

impl StreamConfig {
    /// A stream `name` over `subjects`, keeping messages for a week.
    pub fn new(name: impl Into<String>, subjects: &[&str]) -> Self {
        Self {
            name: name.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }

    /// `[A-Za-z0-9_-]+`: safe as a file name and inside a topic or API subject.
    pub fn valid_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    /// What every adapter refuses alike: a bad name, no subjects. (Subjects
    /// are checked by each adapter, whose patterns differ.)
    pub fn check(&self) -> Result<(), BusError> {
        if !Self::valid_name(&self.name) {
            return Err(BusError::Other(format!(
                "invalid stream name {:?}: use [A-Za-z0-9_-]+",
                self.name
            )));
        }
        if self.subjects.is_empty() {
            return Err(BusError::Other(format!(
                "stream {} needs at least one subject",
                self.name
            )));
        }
        Ok(())
    }
}

/// How a durable group delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupOptions {
    /// An un-acked delivery is redelivered after this long.
    pub ack_wait: Duration,
    /// After this many deliveries without an ack the message goes to the dead letters.
    pub max_deliveries: u32,
    /// At most this many un-acked deliveries per subscription at once.
    pub max_in_flight: usize,
}

impl GroupOptions {
    /// What every adapter refuses as a group name: empty, or with whitespace
    /// or control characters.
    pub fn check_name(group: &str) -> Result<(), BusError> {
        if group.is_empty() || group.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BusError::Other(format!("invalid group name {group:?}")));
        }
        Ok(())
    }
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliveries: 10,
            max_in_flight: 64,
        }
    }
}

/// A message a durable group gave up on, as [`Bus::dead_letters`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Names it for [`Bus::replay_dead`] and [`Bus::purge_dead`]: opaque, made
    /// of characters a shell passes unquoted, stable while it is dead.
    pub id: String,
    /// The group that gave up on it.
    pub group: String,
    /// The message as it was published: original subject, key, headers, payload.
    pub message: Message,
    /// Why it was given up on (`max deliveries reached`, a termination reason …).
    pub reason: String,
    /// Deliveries it got.
    pub deliveries: u32,
    /// When it was dead-lettered, if the adapter knows.
    pub dead_at: Option<SystemTime>,
}

fn no_dead_letters() -> BusError {
    BusError::Other("this bus adapter keeps no dead letters".into())
}

/// The event bus: publish to subjects, subscribe by fan-out or as a durable group.
///
/// Contract every adapter keeps (the conformance kit checks it):
/// - `publish` returns once the broker has accepted the message; for a subject in
///   a durable stream it is then stored and survives a restart.
/// - `subscribe` is a plain fan-out subscription: every subscriber gets every
///   message published after it subscribed; nothing to ack, nothing replayed.
/// - `subscribe_group` joins the named durable group on a subject captured by a
///   stream: each message goes to one member, starting with the oldest message
///   the group has not acked (also those published before the group existed);
///   un-acked deliveries come back after `ack_wait`, nacked ones after their delay.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// What this adapter can promise.
    fn features(&self) -> Features;

    /// Create the stream if missing (idempotent; an existing one keeps its messages).
    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError>;

    /// Hands `message` to the broker; returns once the broker accepted it.
    async fn publish(&self, message: Message) -> Result<(), BusError>;

    /// A plain fan-out subscription to `subject` (wildcards allowed).
    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError>;

    /// Joins durable group `group` on `subject`, which a stream must capture.
    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<Subscription, BusError>;

    /// Whether the bus can serve now (for `/ready`).
    async fn check(&self) -> Result<(), BusError>;

    /// Up to `limit` dead letters of the groups reading `stream`, oldest first.
    /// A message goes there when a group used up its `max_deliveries` on it.
    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        let _ = (stream, limit);
        Err(no_dead_letters())
    }

    /// Gives dead letter `id` of `stream` back to its group as a fresh message
    /// (delivery count from zero), then removes it from the dead letters.
    /// `Ok(false)`: no such dead letter (already replayed or purged).
    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        let _ = (stream, id);
        Err(no_dead_letters())
    }

    /// Removes dead letter `id` of `stream` for good. `Ok(false)`: no such dead letter.
    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        let _ = (stream, id);
        Err(no_dead_letters())
    }

    /// Flush and stop; later calls fail with [`BusError::Closed`].
    async fn close(&self);
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Queue name, e.g. `process_order`.
    pub queue: String,
    /// Deduplication id: enqueueing the same id again makes no second job.
    pub id: String,
    /// The job's body (JSON for orderly's jobs).
    pub payload: Bytes,
}

/// A reserved job. Invisible to other workers until its visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The queue it was reserved from.
    pub queue: String,
    /// Its deduplication id.
    pub id: String,
    /// The job's body.
    pub payload: Bytes,
    /// 1 on the first run, 2 on the first retry, …
    pub attempt: u32,
    /// Errors of the earlier attempts, oldest first.
    pub errors: Vec<String>,
    /// Adapter's handle of this reservation (stream sequence, entry id …).
    pub receipt: String,
}

/// A job that exhausted its retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadJob {
    /// The queue it belonged to.
    pub queue: String,
    /// Its deduplication id.
    pub id: String,
    /// The job's body.
    pub payload: Bytes,
    /// Attempts it got.
    pub attempts: u32,
    /// The error of each attempt, oldest first.
    pub errors: Vec<String>,
}

/// How many jobs of a queue are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Waiting to run (including those scheduled for a retry).
    pub waiting: u64,
    /// Reserved by a worker right now.
    pub running: u64,
    /// Waiting for their retry delay to pass.
    pub retrying: u64,
    /// In the dead letters.
    pub dead: u64,
}

/// What [`JobQueue::fail`] did with a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It runs again after this delay.
    Retry(Duration),
    /// No retries left: it is in the dead letters.
    Dead,
}

/// The durable job queue (Celery's role).
///
/// Contract: a job is reserved by one worker at a time; if it is neither acked
/// nor failed within the visibility timeout it is reclaimed and reserved again
/// (so jobs must be idempotent); `fail` retries it with the queue's
/// [`crate::RetryPolicy`] and dead-letters it when the retries are used up.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// `Ok(false)` when a job with this id already exists or ran.
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError>;

    /// Wait up to `wait` for a job of `queue`.
    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError>;

    /// The job is done; it will not run again.
    async fn ack(&self, job: &Job) -> Result<(), QueueError>;

    /// The attempt failed with `error`: retry later or dead-letter.
    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError>;

    /// Up to `max` jobs of `queue` at once: waits up to `wait` for the first,
    /// then takes what is available without waiting. Empty after the wait.
    ///
    /// The default reserves one by one; adapters that can take a batch in one
    /// round trip override it.
    async fn reserve_many(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let mut jobs = Vec::new();
        let Some(first) = self.reserve(queue, visibility, wait).await? else {
            return Ok(jobs);
        };
        jobs.push(first);
        while jobs.len() < max {
            // What was taken is held now: a failure ends the batch, not the call.
            match self.reserve(queue, visibility, Duration::ZERO).await {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(jobs)
    }

    /// Keep a long-running job reserved for another `visibility`.
    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError>;

    /// [`JobQueue::extend`] for many jobs; one result per job, in order. The
    /// default extends one by one; adapters override it to save round trips.
    async fn extend_many(&self, jobs: &[Job], visibility: Duration) -> Vec<Result<(), QueueError>> {
        let mut results = Vec::with_capacity(jobs.len());
        for job in jobs {
            results.push(self.extend(job, visibility).await);
        }
        results
    }

    /// Hand a reserved job back unfinished, without spending an attempt: it
    /// can be reserved again after `after` (at once for zero), with the same
    /// attempt number and errors. For a stopping worker, or one whose
    /// dependencies are down: the job itself did not fail. `UnknownJob` if
    /// this reservation is no longer current.
    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        let _ = after;
        Err(QueueError::Other(format!(
            "this job queue adapter cannot hand job {} back",
            job.id
        )))
    }

    /// How many jobs of `queue` are in each state.
    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError>;

    /// Up to `limit` dead jobs of `queue`, oldest first.
    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError>;

    /// Move a dead job back to the queue with a fresh attempt count.
    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError>;

    /// Delete every dead job of `queue`; returns how many there were.
    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        let _ = queue;
        Err(QueueError::Other(
            "this job queue adapter cannot purge its dead letters".into(),
        ))
    }

    /// Whether the queue can serve now (for `/ready`).
    async fn check(&self) -> Result<(), QueueError>;
}
