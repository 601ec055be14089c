//! The worker: runs `process_order` jobs (the simulated payment) from the job queue.
//!
//! A payment is a wait (a gateway call), not CPU work, so the worker keeps
//! thousands in flight cheaply: a few reserving loops take jobs in batches
//! and spawn each as a task; a semaphore of `concurrency` permits bounds what
//! is in flight; one keep-alive timer extends, in one batch call, every
//! reservation that has run for a third of its visibility timeout.
//!
//! An outage is not the job's failure: when the orders database or the queue
//! is unavailable the job is handed back without spending an attempt
//! ([`JobQueue::release`]) and reserving pauses until a probe of both answers
//! (jittered, capped backoff). A stop waits for the jobs in flight up to the
//! stop grace, then hands the rest back at once for another worker to take.

pub mod maintenance;
pub mod reconciler;

mod in_flight;
mod payments;

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder};
use orderly_bus::{Backoff, Job, JobQueue, QueueError, RetryOutcome};
use orderly_core::Shutdown;
use orderly_core::trace_context::TraceContext;
use orderly_orders::{OrderService, OrdersError, PayOutcome};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::Instrument;

use in_flight::InFlight;
use orderly_bus::{Pause, PauseNames};
pub use payments::Payments;

/// Loops taking jobs from the queue; each takes a batch per call, so a few
/// keep thousands of jobs in flight.
const RESERVERS: usize = 2;
/// Most jobs one reserve call takes.
const RESERVE_BATCH: usize = 64;
/// How long one reserve call waits for a job (also how soon a stop is noticed
/// while the queue is idle: the call is not cut short, so no job it took is lost).
const RESERVE_WAIT: Duration = Duration::from_millis(500);
/// The probe's waits during a pause: doubling, jittered, up to the cap.
const PROBE_FIRST: Duration = Duration::from_millis(200);
const PROBE_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub payment_delay: Duration,
    /// Most jobs in flight at once.
    pub concurrency: usize,
    pub visibility_timeout: Duration,
    /// How long a stop waits for jobs in flight before handing them back.
    pub stop_grace: Duration,
}

/// How one attempt of a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done: the order is PAID now (or already was, or was canceled).
    Completed,
    /// This attempt failed; the queue decides on a retry.
    Failed(String),
    /// The job can never succeed (unreadable payload).
    Poison(String),
    /// A dependency is down; the job is not at fault and goes back unspent.
    Unavailable(String),
}

pub struct Worker {
    queue: Arc<dyn JobQueue>,
    payments: Arc<dyn Payments>,
    config: WorkerConfig,
    in_flight: InFlight,
    pause: Pause,
}

impl Worker {
    pub fn new(queue: Arc<dyn JobQueue>, orders: Arc<OrderService>, config: WorkerConfig) -> Self {
        Self::with_payments(queue, orders, config)
    }

    /// A worker whose jobs pay through `payments`.
    pub fn with_payments(
        queue: Arc<dyn JobQueue>,
        payments: Arc<dyn Payments>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            queue,
            payments,
            config,
            in_flight: InFlight::default(),
            pause: Pause::new(PAUSE),
        }
    }

    /// Whether reserving is paused because a dependency is down.
    pub fn is_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// One attempt of one job (also called directly by tests).
    pub async fn try_execute(&self, job: &Job) -> Outcome {
        let task: ProcessOrder = match serde_json::from_slice(&job.payload) {
            Ok(t) => t,
            Err(e) => return Outcome::Poison(format!("unreadable process_order payload: {e}")),
        };
        // The trace of the request that created the order goes on (a job
        // without a valid traceparent starts one): every line of this attempt
        // carries its trace id, and so does the status-change event.
        let trace = TraceContext::continue_or_start(task.traceparent.as_deref());
        let span = tracing::info_span!("job", order_id = %task.order_id, job_id = %job.id, trace_id = %trace.trace_id());
        self.pay(job, task, trace).instrument(span).await
    }

    async fn pay(&self, job: &Job, task: ProcessOrder, trace: TraceContext) -> Outcome {
        let id = task.order_id;
        tracing::info!(order_id = %id, job_id = %job.id, attempt = job.attempt, traceparent = task.traceparent.as_deref().unwrap_or(""), "Starting to process order {id}");
        // The simulated payment.
        tokio::time::sleep(self.config.payment_delay).await;
        match self.payments.pay(id, Some(&trace.traceparent())).await {
            Ok(PayOutcome::Paid(_)) => {
                metrics::counter!("worker_orders_paid_total").increment(1);
                tracing::info!(order_id = %id, "Order {id} successfully updated to PAID status");
                Outcome::Completed
            }
            Ok(PayOutcome::AlreadyDone(order)) => {
                tracing::info!(order_id = %id, status = %order.status, "order {id} is already {}; nothing to do", order.status);
                Outcome::Completed
            }
            // Not (yet) visible, e.g. a replica behind the primary: worth a retry.
            Err(OrdersError::NotFound) => Outcome::Failed(format!("order {id} not found")),
            Err(e) if e.is_unavailable() => Outcome::Unavailable(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Run one attempt and settle it with the queue.
    async fn process(&self, job: &Job) {
        let outcome = self.try_execute(job).await;
        let settled = match &outcome {
            Outcome::Completed => self.queue.ack(job).await.map(|_| ()),
            Outcome::Unavailable(why) => {
                self.pause
                    .pause(&format!("the orders database is unavailable: {why}"));
                let released = self.queue.release(job, Duration::ZERO).await;
                if released.is_ok() {
                    metrics::counter!("worker_jobs_handed_back_total").increment(1);
                    tracing::info!(job_id = %job.id, attempt = job.attempt, "job handed back unspent: the orders database is unavailable");
                }
                released
            }
            Outcome::Failed(error) | Outcome::Poison(error) => {
                metrics::counter!("worker_job_failures_total").increment(1);
                let error = if matches!(outcome, Outcome::Poison(_)) {
                    format!("poison: {error}")
                } else {
                    error.clone()
                };
                match self.queue.fail(job, &error).await {
                    Ok(RetryOutcome::Retry(after)) => {
                        tracing::warn!(job_id = %job.id, attempt = job.attempt, %error, retry_in_ms = after.as_millis() as u64, "job failed; retrying");
                        Ok(())
                    }
                    Ok(RetryOutcome::Dead) => {
                        metrics::counter!("worker_jobs_dead_total").increment(1);
                        tracing::error!(job_id = %job.id, attempt = job.attempt, %error, "job failed for the last time; moved to dead letters");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = settled {
            if matches!(e, QueueError::Unavailable(_)) {
                self.pause
                    .pause(&format!("the job queue is unavailable: {e}"));
            }
            // The reservation expires and the job runs again: jobs are idempotent.
            tracing::warn!(job_id = %job.id, error = %e, "cannot settle the job with the queue");
        }
    }

    /// Runs `job`, reserved by a call made at `reserved_at`, as a task of its
    /// own, holding `permit` until it is settled.
    fn start(self: &Arc<Self>, job: Job, reserved_at: Instant, permit: OwnedSemaphorePermit) {
        let key = self.in_flight.insert(job.clone(), reserved_at);
        let worker = self.clone();
        let task = tokio::spawn(async move {
            worker.process(&job).await;
            worker.in_flight.remove(key);
            drop(permit);
        });
        self.in_flight.set_task(key, task.abort_handle());
    }

    /// Takes jobs while there is room in flight, until shutdown or a pause.
    async fn reserve_loop(self: Arc<Self>, slots: Arc<Semaphore>, shutdown: Shutdown) {
        let visibility = self.config.visibility_timeout;
        while !shutdown.is_triggered() {
            if self.pause.is_paused() {
                tokio::select! {
                    _ = self.pause.until_resumed() => {}
                    _ = shutdown.wait() => break,
                }
                continue;
            }
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = shutdown.wait() => break,
            };
            let mut permits = vec![first];
            while permits.len() < RESERVE_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            // Not raced against the shutdown: a call cut short could leave
            // jobs reserved that nobody runs until their visibility timeout.
            // The reservations run from (at the latest) the call's start.
            let asked = Instant::now();
            match self
                .queue
                .reserve_many(PROCESS_ORDER, permits.len(), visibility, RESERVE_WAIT)
                .await
            {
                Ok(jobs) => {
                    for job in jobs {
                        match permits.pop() {
                            Some(permit) => self.start(job, asked, permit),
                            // More than asked for: back at once, unspent.
                            None => {
                                let _ = self.queue.release(&job, Duration::ZERO).await;
                            }
                        }
                    }
                }
                Err(QueueError::Closed) => break,
                Err(e) => self
                    .pause
                    .pause(&format!("cannot reserve jobs from the queue: {e}")),
            }
        }
    }

    /// While paused: probe the queue and the database with jittered, capped
    /// backoff, and resume once both answer.
    async fn probe_loop(self: Arc<Self>, shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = self.pause.until_paused() => {}
                _ = shutdown.wait() => return,
            }
            let mut backoff = Backoff::new(PROBE_FIRST, PROBE_MAX);
            while self.pause.is_paused() {
                let wait = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait() => return,
                }
                let probe = match self.queue.check().await {
                    Ok(()) => self.payments.check().await,
                    Err(e) => Err(format!("job queue: {e}")),
                };
                match probe {
                    Ok(()) => self.pause.resume(),
                    Err(why) => {
                        tracing::warn!(%why, next_probe_ms = backoff.current().as_millis() as u64, "worker still paused")
                    }
                }
            }
        }
    }

    /// The one keep-alive timer: every sixth of the visibility timeout, the
    /// reservations older than a third of it are extended in one batch.
    async fn keep_alive(self: Arc<Self>) {
        let visibility = self.config.visibility_timeout;
        let every = (visibility / 6).max(Duration::from_millis(50));
        let stale = visibility / 3;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let Some(before) = now.checked_sub(stale) else {
                continue;
            };
            let due = self.in_flight.due(before);
            if due.is_empty() {
                continue;
            }
            let (keys, jobs): (Vec<u64>, Vec<Job>) = due.into_iter().unzip();
            let results = self.queue.extend_many(&jobs, visibility).await;
            let mut lost = 0usize;
            for ((key, job), result) in keys.into_iter().zip(&jobs).zip(results) {
                match result {
                    Ok(()) => self.in_flight.kept(key, now),
                    Err(QueueError::UnknownJob(_)) => {
                        lost += 1;
                        // It runs again elsewhere; paying twice is harmless.
                        self.in_flight.kept(key, now);
                        tracing::warn!(job_id = %job.id, "a job's reservation expired while it ran; another worker may run it too");
                    }
                    Err(e) => {
                        tracing::warn!(job_id = %job.id, error = %e, "cannot extend the job's reservation");
                    }
                }
            }
            tracing::debug!(
                extended = jobs.len() - lost,
                lost,
                "reservations kept alive"
            );
        }
    }

    /// Past the stop grace: end the jobs still running and hand each back to
    /// the queue at once, unspent, for another worker.
    async fn hand_back(&self) {
        let left = self.in_flight.drain();
        if left.is_empty() {
            return;
        }
        let mut releases = JoinSet::new();
        for (job, task) in left {
            if let Some(task) = task {
                task.abort();
            }
            let queue = self.queue.clone();
            releases.spawn(async move {
                let r = queue.release(&job, Duration::ZERO).await;
                (job, r)
            });
        }
        let (mut handed, mut failed) = (0u64, 0u64);
        while let Some(done) = releases.join_next().await {
            match done {
                Ok((_, Ok(()))) => handed += 1,
                // Finished between the grace and the release: nothing to hand back.
                Ok((_, Err(QueueError::UnknownJob(_)))) => {}
                Ok((job, Err(e))) => {
                    failed += 1;
                    tracing::warn!(job_id = %job.id, error = %e, "cannot hand the job back; it runs again after its visibility timeout");
                }
                Err(_) => failed += 1,
            }
        }
        metrics::counter!("worker_jobs_handed_back_total").increment(handed);
        tracing::warn!(
            handed_back = handed,
            failed,
            grace_ms = self.config.stop_grace.as_millis() as u64,
            "stop grace over: handed {handed} unfinished jobs back to the queue"
        );
    }

    /// Run until shutdown: up to `concurrency` jobs in flight; on shutdown,
    /// stop reserving, wait for the jobs in flight up to the stop grace, then
    /// hand the rest back.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let limit = self
            .config
            .concurrency
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let slots = Arc::new(Semaphore::new(limit));
        tracing::info!(
            concurrency = limit,
            stop_grace_ms = self.config.stop_grace.as_millis() as u64,
            queue = PROCESS_ORDER,
            "worker started"
        );
        let reservers: Vec<_> = (0..RESERVERS)
            .map(|_| tokio::spawn(self.clone().reserve_loop(slots.clone(), shutdown.clone())))
            .collect();
        let keep_alive = tokio::spawn(self.clone().keep_alive());
        let prober = tokio::spawn(self.clone().probe_loop(shutdown.clone()));
        for r in reservers {
            let _ = r.await;
        }
        let running = self.in_flight.len();
        if running > 0 {
            tracing::info!(
                in_flight = running,
                grace_ms = self.config.stop_grace.as_millis() as u64,
                "worker stopping: waiting for the jobs in flight"
            );
        }
        let all_back = slots.acquire_many(limit as u32);
        if tokio::time::timeout(self.config.stop_grace, all_back)
            .await
            .is_err()
        {
            self.hand_back().await;
        }
        keep_alive.abort();
        prober.abort();
        tracing::info!("worker stopped");
    }
}

/// How this role's outage pause shows in metrics and logs.
const PAUSE: PauseNames = PauseNames {
    gauge: "worker_paused",
    counter: "worker_pauses_total",
    paused: "worker paused: a dependency is unavailable; jobs are handed back unspent and none are reserved until it answers",
    resumed: "worker resumed: its dependencies answer again",
};
