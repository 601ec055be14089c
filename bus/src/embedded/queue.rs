//! The job queue on the embedded broker.
//!
//! Jobs are messages of the stream `jobs` (subjects `jobs.>`), queue `q` on the
//! subject `jobs.q`, consumed by one shared group per queue in pull style. A
//! reservation is a delivery whose ack wait is the visibility timeout; a
//! failure is a note (the error) plus a nack with the retry delay. Job ids
//! deduplicate through the stream's dedup ids, remembered for the stream's
//! `max_age` (7 days), also after the job ran.
//!
//! `requeue_dead` publishes the dead job again as a new message: it starts at
//! attempt 1 with an empty error list (the dead letter with its errors is gone).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::EmbeddedBroker;
use super::stream::{MSG_ID, PULL_MEMBER, StreamShared};
use crate::subject;
use crate::{
    Bus, DeadJob, GroupOptions, Job, JobQueue, Message, NewJob, QueueError, QueueStats,
    RetryOutcome, RetryPolicy, StreamConfig,
};

const STREAM: &str = "jobs";
const GROUP: &str = "workers";
/// Header with the job id as given (the dedup id also names the queue).
const JOB_ID: &str = "job-id";
/// How long unconsumed jobs and seen job ids are kept.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Expired reservations a job may have beyond its retries before it counts as
/// poison (e.g. it crashes the worker every time).
const EXTRA_DELIVERIES: u32 = 5;

/// The durable job queue of the embedded broker. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    broker: EmbeddedBroker,
    stream: Arc<StreamShared>,
    policy: RetryPolicy,
    groups: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

/// `<seq>.<attempt>`: the delivery a job handle stands for.
fn receipt(seq: u64, attempt: u32) -> String {
    format!("{seq}.{attempt}")
}

fn parse_receipt(job: &Job) -> Result<(u64, u32), QueueError> {
    let unknown = || QueueError::UnknownJob(job.id.clone());
    let (seq, attempt) = job.receipt.split_once('.').ok_or_else(unknown)?;
    Ok((
        seq.parse().map_err(|_| unknown())?,
        attempt.parse().map_err(|_| unknown())?,
    ))
}

impl EmbeddedQueue {
    /// The job queue on `broker`'s `jobs` stream, retrying failed jobs per `policy`.
    pub async fn open(broker: &EmbeddedBroker, policy: RetryPolicy) -> Result<Self, QueueError> {
        let mut config = StreamConfig::new(STREAM, &["jobs.>"]);
        config.max_age = RETENTION;
        broker.ensure_stream(config).await?;
        let stream = broker
            .stream_named(STREAM)
            .ok_or_else(|| QueueError::Unavailable("the jobs stream is missing".into()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                broker: broker.clone(),
                stream,
                policy,
                groups: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn subject(queue: &str) -> Result<String, QueueError> {
        if queue.contains('.') || subject::validate_literal(queue).is_err() {
            return Err(QueueError::Other(format!(
                "invalid queue name {queue:?}: one subject token, no wildcards"
            )));
        }
        Ok(format!("{STREAM}.{queue}"))
    }

    /// The group of `queue`, created on first use.
    fn group(&self, queue: &str) -> Result<usize, QueueError> {
        if let Some(gi) = self
            .inner
            .groups
            .lock()
            .expect("queue groups lock poisoned")
            .get(queue)
        {
            return Ok(*gi);
        }
        let subject = Self::subject(queue)?;
        let options = GroupOptions {
            max_deliveries: self.inner.policy.max_retries + 1 + EXTRA_DELIVERIES,
            ..GroupOptions::default()
        };
        let gi = {
            let mut s = self.inner.stream.lock();
            if s.is_closed() {
                return Err(QueueError::Closed);
            }
            s.ensure_group(GROUP, &subject, &options)?
        };
        self.inner
            .groups
            .lock()
            .expect("queue groups lock poisoned")
            .insert(queue.to_string(), gi);
        Ok(gi)
    }

    /// Up to `max` jobs under one lock; waits up to `wait` while there are none.
    async fn take(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let gi = self.group(queue)?;
        let notify = self.inner.stream.lock().group_notify(gi);
        let give_up = Instant::now() + wait;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            let (taken, deadline) = {
                let mut s = self.inner.stream.lock();
                // Registered under the lock: an enqueue after this look wakes us.
                notified.as_mut().enable();
                if s.is_closed() {
                    return Err(QueueError::Closed);
                }
                let now = Instant::now();
                s.tick(gi, now);
                let taken = s.take(gi, PULL_MEMBER, max.max(1), now + visibility);
                (taken, s.next_deadline(gi))
            };
            if !taken.is_empty() {
                return Ok(taken
                    .into_iter()
                    .map(|t| Job {
                        queue: queue.to_string(),
                        id: t.msg.header(JOB_ID).unwrap_or_default().to_string(),
                        payload: t.msg.payload,
                        attempt: t.attempt,
                        errors: t.notes,
                        receipt: receipt(t.seq, t.attempt),
                    })
                    .collect());
            }
            if Instant::now() >= give_up {
                return Ok(Vec::new());
            }
            // Also wake when a delay or a reservation of someone else runs out.
            let until = deadline.map_or(give_up, |d| d.min(give_up));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    fn job_message(queue: &str, id: &str, payload: bytes::Bytes) -> Result<Message, QueueError> {
        let mut m = Message::new(Self::subject(queue)?, payload);
        m.headers.insert(MSG_ID.into(), format!("{queue}/{id}"));
        m.headers.insert(JOB_ID.into(), id.to_string());
        Ok(m)
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError> {
        self.group(&job.queue)?;
        let msg = Self::job_message(&job.queue, &job.id, job.payload)?;
        let seq = self
            .inner
            .broker
            .append_to(&self.inner.stream, msg, true)
            .await?;
        Ok(seq.is_some())
    }

    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        Ok(self.take(queue, 1, visibility, wait).await?.pop())
    }

    async fn reserve_many(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        self.take(queue, max, visibility, wait).await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        let gi = self.group(&job.queue)?;
        let (seq, _) = parse_receipt(job)?;
        // Idempotent: acking a job that was acked (or reclaimed and run) is fine.
        self.inner.stream.lock().ack(gi, seq);
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        let gi = self.group(&job.queue)?;
        let (seq, attempt) = parse_receipt(job)?;
        let mut s = self.inner.stream.lock();
        if !s.is_current(gi, seq, attempt) {
            // Reclaimed and reserved by another worker, or settled already.
            return Err(QueueError::UnknownJob(job.id.clone()));
        }
        s.note(gi, seq, error);
        match self.inner.policy.after_failure(attempt) {
            Some(delay) => {
                s.nack(gi, seq, attempt, delay);
                Ok(RetryOutcome::Retry(delay))
            }
            None => {
                s.dead_letter(gi, seq, "retries exhausted");
                Ok(RetryOutcome::Dead)
            }
        }
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        let gi = self.group(&job.queue)?;
        let (seq, attempt) = parse_receipt(job)?;
        let deadline = Instant::now() + visibility;
        if self.inner.stream.lock().extend(gi, seq, attempt, deadline) {
            Ok(())
        } else {
            Err(QueueError::UnknownJob(job.id.clone()))
        }
    }

    async fn extend_many(&self, jobs: &[Job], visibility: Duration) -> Vec<Result<(), QueueError>> {
        let deadline = Instant::now() + visibility;
        let handles: Vec<_> = jobs
            .iter()
            .map(|job| Ok::<_, QueueError>((self.group(&job.queue)?, parse_receipt(job)?)))
            .collect();
        // One lock for the whole batch: the keep-alive of thousands of jobs
        // is one pass, not thousands of lock round trips.
        let mut s = self.inner.stream.lock();
        handles
            .into_iter()
            .zip(jobs)
            .map(|(handle, job)| {
                let (gi, (seq, attempt)) = handle?;
                if s.extend(gi, seq, attempt, deadline) {
                    Ok(())
                } else {
                    Err(QueueError::UnknownJob(job.id.clone()))
                }
            })
            .collect()
    }

    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        let gi = self.group(&job.queue)?;
        let (seq, attempt) = parse_receipt(job)?;
        if self.inner.stream.lock().release(gi, seq, attempt, after) {
            Ok(())
        } else {
            Err(QueueError::UnknownJob(job.id.clone()))
        }
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let gi = self.group(queue)?;
        let mut s = self.inner.stream.lock();
        s.tick(gi, Instant::now());
        let c = s.counts(gi);
        Ok(QueueStats {
            waiting: c.pending + c.delayed,
            running: c.in_flight,
            retrying: c.delayed,
            dead: c.dead,
        })
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let gi = self.group(queue)?;
        let s = self.inner.stream.lock();
        Ok(s.dead_letters(gi)
            .take(limit)
            .map(|d| DeadJob {
                queue: queue.to_string(),
                id: d.stored.msg.header(JOB_ID).unwrap_or_default().to_string(),
                payload: d.stored.msg.payload.clone(),
                attempts: d.deliveries,
                errors: d.notes.clone(),
            })
            .collect())
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        let gi = self.group(queue)?;
        let letter = {
            let mut s = self.inner.stream.lock();
            let seq = s
                .dead_letters(gi)
                .find(|d| d.stored.msg.header(JOB_ID) == Some(id))
                .map(|d| d.stored.seq);
            match seq {
                Some(seq) => s.remove_dead(gi, seq),
                None => None,
            }
        };
        let Some(letter) = letter else {
            return Ok(false);
        };
        // Past the dedup check on purpose: the id is known, the job is wanted again.
        self.inner
            .broker
            .append_to(&self.inner.stream, letter.stored.msg, false)
            .await?;
        Ok(true)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        let gi = self.group(queue)?;
        let mut s = self.inner.stream.lock();
        let seqs: Vec<u64> = s.dead_letters(gi).map(|d| d.stored.seq).collect();
        Ok(seqs
            .into_iter()
            .filter(|seq| s.remove_dead(gi, *seq).is_some())
            .count() as u64)
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.inner.broker.check().await?;
        Ok(())
    }
}
