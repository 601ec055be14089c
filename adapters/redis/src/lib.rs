//! [`JobQueue`] on Redis Streams — the worker's production queue.
//!
//! Keys of queue `q` under prefix `p` (DB 0):
//! - `p:q:stream` — one entry per run (`id` field), consumed by the group
//!   `workers`; each worker process is its own consumer (`host-pid-uuid`).
//! - `p:q:job:<id>` — the job: payload, attempts, error history, state.
//! - `p:q:id:<id>` — the dedup marker, kept 7 days, also after the job ran.
//! - `p:q:leases` — sorted set of running jobs by lease deadline (the
//!   visibility timeout of that reservation); `extend` moves the deadline.
//! - `p:q:retry` — sorted set of failed jobs by due time; the retry mover
//!   puts due ones back into the stream.
//! - `p:q:dead` — a stream of dead letters with their error history.
//! - `p:q:ready` — how many stream entries no worker has read yet.
//! - `p:result:<id>` (DB 1, the results URL) — `{status, finished_at, …}` for 24 h.
//!
//! Every state change is one Lua script ([`scripts`]), so it is atomic and a
//! client dying mid-way leaves no half-done job. `reserve` moves due retries and
//! reclaims expired leases itself (so nothing waits for maintenance), then reads
//! the group; with nothing to do it blocks in `XREAD` on a connection of its own
//! until a new entry, the next due retry or lease, or the end of the wait.
//!
//! Reclaim is by the lease deadline rather than `XAUTOCLAIM`'s single minimum
//! idle time: each reservation carries its own visibility timeout, and a job is
//! taken over with `XCLAIM` (counted as a delivery) only when its own lease ran
//! out. A job delivered `max_deliveries` times without an ack or a failure is
//! poison and goes to the dead letters (Sidekiq Pro's rule: 3 recoveries).
//!
//! Redis Cluster is not supported: the scripts touch keys they build.

#![warn(missing_docs, unreachable_pub)]

mod client;
mod config;
mod lease;
mod maintenance;
mod scripts;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use tokio::time::Instant;

use orderly_bus::{DeadJob, Job, JobQueue, NewJob, QueueError, QueueStats, RetryOutcome};

use scripts::Scripts;

pub use client::{RedisClientError, open_client};
pub use config::{DEFAULT_MAX_DELIVERIES, RedisQueueConfig, RedisTls};
pub use lease::RedisLease;
pub use maintenance::{SweepReport, TrimReport};

/// Dead letters deleted per script call by `purge_dead` (keeps Redis responsive).
const PURGE_BATCH: usize = 500;
/// Most jobs one reserve script call takes.
const RESERVE_BATCH_MAX: usize = 256;
/// Jobs per keep-alive script call.
const EXTEND_BATCH: usize = 500;

/// The Redis Streams job queue. Cheap to clone.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    conn: ConnectionManager,
    results: Option<ConnectionManager>,
    config: RedisQueueConfig,
    consumer: String,
    scripts: Scripts,
    /// Connections for `XREAD BLOCK`: a blocking command would stall every
    /// other command multiplexed on the shared connection.
    idle_blocking: Mutex<Vec<MultiplexedConnection>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.config.prefix)
            .field("consumer", &self.inner.consumer)
            .field("policy", &self.inner.config.policy)
            .finish_non_exhaustive()
    }
}

fn to_queue_error(e: redis::RedisError) -> QueueError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        QueueError::Unavailable(e.to_string())
    } else {
        QueueError::Other(format!("redis: {e}"))
    }
}

/// The same error again, for each job of a batch that failed as a whole.
fn clone_error(e: &QueueError) -> QueueError {
    match e {
        QueueError::Closed => QueueError::Closed,
        QueueError::Unavailable(s) => QueueError::Unavailable(s.clone()),
        QueueError::UnknownJob(s) => QueueError::UnknownJob(s.clone()),
        other => QueueError::Other(other.to_string()),
    }
}

fn client_error(e: RedisClientError) -> QueueError {
    QueueError::Other(format!("redis: {e}"))
}

/// `host-pid-uuid`: unique per worker process, readable in `XINFO CONSUMERS`.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A retry's wait in the whole milliseconds the queue schedules by: rounded
/// up, plus one for the millisecond Redis' `TIME` drops when the script reads
/// it, so a job never runs before its drawn delay (a jittered delay can be a
/// fraction of a millisecond, which truncating would turn into "at once").
fn retry_delay_millis(d: Duration) -> u64 {
    if d.is_zero() {
        return 0;
    }
    millis(d.saturating_add(Duration::from_nanos(999_999))).saturating_add(1)
}

/// The keys of one queue, in the order every queue script takes them.
struct QueueKeys {
    base: String,
    stream: String,
    retry: String,
    leases: String,
    dead: String,
    ready: String,
}

fn decode_errors(raw: &[u8]) -> Vec<String> {
    // cjson encodes an empty table as `{}`.
    serde_json::from_slice(raw).unwrap_or_default()
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// `<entry id> <token>`: the delivery a job handle stands for.
fn parse_receipt(job: &Job) -> Result<(&str, &str), QueueError> {
    job.receipt
        .split_once(' ')
        .ok_or_else(|| QueueError::UnknownJob(job.id.clone()))
}

impl RedisQueue {
    /// Connect (fails when Redis does not answer, so a misconfiguration shows at start).
    pub async fn connect(config: RedisQueueConfig) -> Result<Self, QueueError> {
        if config.prefix.is_empty() || config.prefix.contains(char::is_whitespace) {
            return Err(QueueError::Other(format!(
                "invalid key prefix {:?}",
                config.prefix
            )));
        }
        let client = open_client(&config.url, &config.tls).map_err(client_error)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(manager_config.clone())
            .await
            .map_err(to_queue_error)?;
        let results = match &config.results_url {
            None => None,
            Some(url) => {
                let results_client = open_client(url, &config.tls).map_err(client_error)?;
                Some(
                    results_client
                        .get_connection_manager_with_config(manager_config)
                        .await
                        .map_err(to_queue_error)?,
                )
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                results,
                config,
                consumer: consumer_name(),
                scripts: Scripts::new(),
                idle_blocking: Mutex::new(Vec::new()),
            }),
        })
    }

    /// This process's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.inner.consumer
    }

    /// The settings it was connected with.
    pub fn config(&self) -> &RedisQueueConfig {
        &self.inner.config
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    fn keys(&self, queue: &str) -> Result<QueueKeys, QueueError> {
        if queue.is_empty() || queue.contains(char::is_whitespace) {
            return Err(QueueError::Other(format!("invalid queue name {queue:?}")));
        }
        let base = format!("{}:{queue}", self.inner.config.prefix);
        Ok(QueueKeys {
            stream: format!("{base}:stream"),
            retry: format!("{base}:retry"),
            leases: format!("{base}:leases"),
            dead: format!("{base}:dead"),
            ready: format!("{base}:ready"),
            base,
        })
    }

    fn invocation<'a>(script: &'a redis::Script, k: &QueueKeys) -> redis::ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        inv.key(&k.stream)
            .key(&k.retry)
            .key(&k.leases)
            .key(&k.dead)
            .key(&k.ready)
            .arg(&k.base);
        inv
    }

    fn result_key(&self, id: &str) -> String {
        format!("{}:result:{id}", self.inner.config.prefix)
    }

    /// The old result backend's record; a lost result never fails the job.
    async fn store_result(&self, job: &Job, status: &str, attempts: u64, errors: &[String]) {
        let Some(results) = &self.inner.results else {
            return;
        };
        let finished_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let record = serde_json::json!({
            "status": status,
            "queue": job.queue,
            "job_id": job.id,
            "attempts": attempts,
            "errors": errors,
            "finished_at": finished_at,
        });
        let mut conn = results.clone();
        let stored: redis::RedisResult<()> = conn
            .set_ex(
                self.result_key(&job.id),
                record.to_string(),
                self.inner.config.result_ttl.as_secs().max(1),
            )
            .await;
        if let Err(e) = stored {
            tracing::warn!(job_id = %job.id, error = %e, "cannot store the job's result");
        }
    }

    /// A finished job's result record (JSON), while its TTL lasts.
    pub async fn result(&self, id: &str) -> Result<Option<String>, QueueError> {
        let Some(results) = &self.inner.results else {
            return Ok(None);
        };
        let mut conn = results.clone();
        conn.get(self.result_key(id)).await.map_err(to_queue_error)
    }

    /// Up to `max` jobs per script call; waits up to `wait` while there are none.
    async fn take(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let k = self.keys(queue)?;
        let give_up = Instant::now() + wait;
        loop {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let reply: Vec<Vec<u8>> = Self::invocation(&self.inner.scripts.reserve, &k)
                .arg(&self.inner.consumer)
                .arg(millis(visibility).max(1))
                .arg(&token)
                .arg(self.inner.config.max_deliveries.max(1))
                .arg(max.clamp(1, RESERVE_BATCH_MAX))
                .invoke_async(&mut self.conn())
                .await
                .map_err(to_queue_error)?;
            match reply.first().map(Vec::as_slice) {
                Some(b"job") if reply.len().is_multiple_of(7) => {
                    return Ok(reply
                        .chunks_exact(7)
                        .map(|f| Job {
                            queue: queue.to_string(),
                            id: text(&f[1]),
                            payload: Bytes::from(f[4].clone()),
                            attempt: text(&f[3]).parse().unwrap_or(1),
                            errors: decode_errors(&f[5]),
                            receipt: format!("{} {}", text(&f[2]), text(&f[6])),
                        })
                        .collect());
                }
                Some(b"wait") if reply.len() == 3 => {
                    let now = Instant::now();
                    if now >= give_up {
                        return Ok(Vec::new());
                    }
                    let mut block = give_up - now;
                    if let Ok(due_ms) = text(&reply[1]).parse::<i64>()
                        && due_ms >= 0
                    {
                        block = block.min(Duration::from_millis(due_ms as u64));
                    }
                    if block >= Duration::from_millis(1) {
                        self.wait_for_entry(&k.stream, &text(&reply[2]), block)
                            .await?;
                    }
                }
                _ => {
                    return Err(QueueError::Other(format!(
                        "unexpected reply of the reserve script ({} parts)",
                        reply.len()
                    )));
                }
            }
        }
    }

    /// Extends `jobs` (all of `queue`) in script calls of [`EXTEND_BATCH`].
    async fn extend_batch(
        &self,
        queue: &str,
        jobs: &[&Job],
        visibility: Duration,
    ) -> Vec<Result<(), QueueError>> {
        let k = match self.keys(queue) {
            Ok(k) => k,
            Err(e) => return jobs.iter().map(|_| Err(clone_error(&e))).collect(),
        };
        let mut results = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(EXTEND_BATCH) {
            let mut inv = Self::invocation(&self.inner.scripts.extend_many, &k);
            inv.arg(&self.inner.consumer).arg(millis(visibility).max(1));
            let mut handles = Vec::with_capacity(chunk.len());
            for job in chunk {
                match parse_receipt(job) {
                    Ok((entry, token)) => {
                        inv.arg(&job.id).arg(entry).arg(token);
                        handles.push(true);
                    }
                    Err(_) => handles.push(false),
                }
            }
            let held: Result<Vec<i64>, QueueError> = if handles.iter().any(|h| *h) {
                inv.invoke_async(&mut self.conn())
                    .await
                    .map_err(to_queue_error)
            } else {
                Ok(Vec::new())
            };
            match held {
                Ok(held) => {
                    let mut held = held.into_iter();
                    for (job, sent) in chunk.iter().zip(handles) {
                        let ok = sent && held.next() == Some(1);
                        results.push(if ok {
                            Ok(())
                        } else {
                            Err(QueueError::UnknownJob(job.id.clone()))
                        });
                    }
                }
                Err(e) => results.extend(chunk.iter().map(|_| Err(clone_error(&e)))),
            }
        }
        results
    }

    /// Wait until an entry newer than `after` arrives in `stream`, or `block` passes.
    async fn wait_for_entry(
        &self,
        stream: &str,
        after: &str,
        block: Duration,
    ) -> Result<(), QueueError> {
        let block_ms = millis(block).max(1);
        let taken = self
            .inner
            .idle_blocking
            .lock()
            .expect("blocking connections lock poisoned")
            .pop();
        let mut conn = match taken {
            Some(c) => c,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(block + Duration::from_secs(10)));
                self.inner
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(to_queue_error)?
            }
        };
        let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(block_ms)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(stream)
            .arg(after)
            .query_async(&mut conn)
            .await;
        match read {
            Ok(_) => {
                self.inner
                    .idle_blocking
                    .lock()
                    .expect("blocking connections lock poisoned")
                    .push(conn);
                Ok(())
            }
            Err(e) => Err(to_queue_error(e)),
        }
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError> {
        let k = self.keys(&job.queue)?;
        let created: i64 = Self::invocation(&self.inner.scripts.enqueue, &k)
            .arg(&job.id)
            .arg(job.payload.as_ref())
            .arg(self.inner.config.dedup_ttl.as_secs().max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        Ok(created == 1)
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
        let k = self.keys(&job.queue)?;
        let (entry, _) = parse_receipt(job)?;
        let attempts: u64 = Self::invocation(&self.inner.scripts.ack, &k)
            .arg(&job.id)
            .arg(entry)
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        if attempts > 0 {
            self.store_result(job, "SUCCESS", attempts, &[]).await;
        }
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        let k = self.keys(&job.queue)?;
        let (entry, token) = parse_receipt(job)?;
        let retry = self.inner.config.policy.after_failure(job.attempt);
        let delay_ms: i64 = retry.map_or(-1, |d| {
            i64::try_from(retry_delay_millis(d)).unwrap_or(i64::MAX)
        });
        let outcome: i64 = Self::invocation(&self.inner.scripts.fail, &k)
            .arg(&job.id)
            .arg(entry)
            .arg(token)
            .arg(error)
            .arg(delay_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        match (outcome, retry) {
            (1, Some(delay)) => Ok(RetryOutcome::Retry(delay)),
            (0, _) => {
                let mut errors = job.errors.clone();
                errors.push(error.to_string());
                self.store_result(job, "FAILURE", u64::from(job.attempt), &errors)
                    .await;
                Ok(RetryOutcome::Dead)
            }
            // Reclaimed by another worker (or settled) since this reservation.
            _ => Err(QueueError::UnknownJob(job.id.clone())),
        }
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        let k = self.keys(&job.queue)?;
        let (entry, token) = parse_receipt(job)?;
        let held: i64 = Self::invocation(&self.inner.scripts.extend, &k)
            .arg(&job.id)
            .arg(entry)
            .arg(token)
            .arg(&self.inner.consumer)
            .arg(millis(visibility).max(1))
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        if held == 1 {
            Ok(())
        } else {
            Err(QueueError::UnknownJob(job.id.clone()))
        }
    }

    async fn extend_many(&self, jobs: &[Job], visibility: Duration) -> Vec<Result<(), QueueError>> {
        let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        let mut results: Vec<Option<Result<(), QueueError>>> = jobs.iter().map(|_| None).collect();
        for queue in queues {
            let (at, of_queue): (Vec<usize>, Vec<&Job>) = jobs
                .iter()
                .enumerate()
                .filter(|(_, j)| j.queue == queue)
                .unzip();
            let done = self.extend_batch(queue, &of_queue, visibility).await;
            for (i, r) in at.into_iter().zip(done) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueueError::Other("not extended".into()))))
            .collect()
    }

    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        let k = self.keys(&job.queue)?;
        let (entry, token) = parse_receipt(job)?;
        let released: i64 = Self::invocation(&self.inner.scripts.release, &k)
            .arg(&job.id)
            .arg(entry)
            .arg(token)
            .arg(retry_delay_millis(after))
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        if released == 1 {
            Ok(())
        } else {
            Err(QueueError::UnknownJob(job.id.clone()))
        }
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let k = self.keys(queue)?;
        let (ready, running, retrying, dead): (Option<i64>, u64, u64, u64) = redis::pipe()
            .get(&k.ready)
            .zcard(&k.leases)
            .zcard(&k.retry)
            .xlen(&k.dead)
            .query_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        let ready = u64::try_from(ready.unwrap_or(0)).unwrap_or(0);
        Ok(QueueStats {
            waiting: ready + retrying,
            running,
            retrying,
            dead,
        })
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let k = self.keys(queue)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Vec<(String, Vec<u8>)>)> = redis::cmd("XRANGE")
            .arg(&k.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        Ok(entries
            .into_iter()
            .map(|(_, fields)| {
                let mut d = DeadJob {
                    queue: queue.to_string(),
                    id: String::new(),
                    payload: Bytes::new(),
                    attempts: 0,
                    errors: Vec::new(),
                };
                for (name, value) in fields {
                    match name.as_str() {
                        "id" => d.id = text(&value),
                        "payload" => d.payload = Bytes::from(value),
                        "attempts" => d.attempts = text(&value).parse().unwrap_or(0),
                        "errors" => d.errors = decode_errors(&value),
                        _ => {}
                    }
                }
                d
            })
            .collect())
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        let k = self.keys(queue)?;
        let requeued: i64 = Self::invocation(&self.inner.scripts.requeue, &k)
            .arg(id)
            .invoke_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        Ok(requeued == 1)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        let mut total = 0;
        loop {
            let n: u64 = Self::invocation(&self.inner.scripts.purge_dead, &k)
                .arg(PURGE_BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(to_queue_error)?;
            total += n;
            if n < PURGE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    async fn check(&self) -> Result<(), QueueError> {
        let pong: String = redis::cmd("PING")
            .query_async(&mut self.conn())
            .await
            .map_err(to_queue_error)?;
        if pong != "PONG" {
            return Err(QueueError::Unavailable(format!("PING answered {pong:?}")));
        }
        if let Some(results) = &self.inner.results {
            let _: String = redis::cmd("PING")
                .query_async(&mut results.clone())
                .await
                .map_err(to_queue_error)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_delay_is_rounded_up_so_the_job_never_runs_early() {
        assert_eq!(retry_delay_millis(Duration::ZERO), 0);
        assert_eq!(retry_delay_millis(Duration::from_micros(268)), 2);
        assert_eq!(retry_delay_millis(Duration::from_millis(5)), 6);
        assert_eq!(retry_delay_millis(Duration::from_micros(5_001)), 7);
    }
}
