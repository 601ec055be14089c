//! The reconciler: finds orders PENDING for longer than a threshold and
//! enqueues their `process_order` job again, under the id the consumer gives
//! it, so an event lost on the way (dead-lettered by the bus during an outage,
//! acked by a consumer that crashed before it enqueued, a job lost with its
//! queue) still ends in a payment, and a job that exists is not made twice.
//!
//! A job that exists and is dead is reported, never requeued: it died of its
//! own errors, and requeueing it on every run would retry it forever. A person
//! reads its errors (`orderly jobs dead`) and requeues it (`orderly jobs
//! requeue <id>`).
//!
//! Runs on tokio-cron-scheduler with a cron expression, each run under the
//! lease `maintenance:reconcile` (see [`crate::maintenance`]), so one instance
//! runs it at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder};
use orderly_bus::{JobQueue, Lease, NewJob, QueueError};
use orderly_core::Shutdown;
use orderly_orders::store::{OrderStore, StalePending, StoreError};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use uuid::Uuid;

use crate::maintenance::{self, Periodic};

/// The task's name; its lease is `maintenance:reconcile`.
pub const TASK: &str = "reconcile";
/// Dead jobs read per run to tell a dead job from a live one.
const DEAD_LETTERS_READ: usize = 10_000;
/// A run that takes longer than this lets another instance start one.
const LEASE_TTL: Duration = Duration::from_secs(120);
/// A scheduled run goes on page after page while pages come back full (an
/// outage can strand thousands of orders in seconds) for at most this long,
/// well inside the lease; the next run goes on where it stopped.
const RUN_BUDGET: Duration = Duration::from_secs(30);

/// The job id the consumer gives an order's job (one function for both:
/// [`orderly_bus::schema::jobs::process_order_job_id`]).
pub fn job_id(order_id: Uuid, new_order_event: Option<Uuid>) -> String {
    let event = new_order_event.map(|e| e.to_string());
    orderly_bus::schema::jobs::process_order_job_id(order_id, event.as_deref())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcilerConfig {
    /// An order PENDING longer than this is looked at.
    pub after: Duration,
    /// Orders looked at per run.
    pub batch: u32,
}

/// What one run found among the stale orders it looked at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Pages of stale orders read.
    pub pages: u64,
    /// Stale PENDING orders looked at.
    pub looked_at: u64,
    /// Their job was missing and is enqueued again.
    pub requeued: u64,
    /// Their job exists and is not dead (waiting, running, retrying): left to it.
    pub in_queue: u64,
    /// Their job is dead: reported for a person to act on.
    pub dead: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("orders database: {0}")]
    Store(#[from] StoreError),
    #[error("job queue: {0}")]
    Queue(#[from] QueueError),
}

pub struct Reconciler {
    store: Arc<dyn OrderStore>,
    queue: Arc<dyn JobQueue>,
    config: ReconcilerConfig,
    /// Where the next run goes on: each run takes the next page of stale
    /// orders, so orders whose job is dead cannot hide newer ones for good.
    cursor: Mutex<Option<StalePending>>,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn OrderStore>,
        queue: Arc<dyn JobQueue>,
        config: ReconcilerConfig,
    ) -> Self {
        Self {
            store,
            queue,
            config,
            cursor: Mutex::new(None),
        }
    }

    /// One pass over the next page of stale orders (called by the schedule,
    /// under the lease, and by tests).
    pub async fn run_once(&self) -> Result<Reconciled, ReconcileError> {
        let mut cursor = self.cursor.lock().await;
        let before = OffsetDateTime::now_utc() - self.config.after;
        let stale = self
            .store
            .stale_pending(before, cursor.as_ref(), i64::from(self.config.batch))
            .await?;
        // A short page is the end: the next run starts from the oldest again.
        *cursor = if stale.len() < self.config.batch as usize {
            None
        } else {
            stale.last().cloned()
        };
        let mut done = Reconciled {
            pages: 1,
            looked_at: stale.len() as u64,
            ..Reconciled::default()
        };
        if stale.is_empty() {
            return Ok(done);
        }
        let dead: HashSet<String> = self
            .queue
            .dead_letters(PROCESS_ORDER, DEAD_LETTERS_READ)
            .await?
            .into_iter()
            .map(|job| job.id)
            .collect();
        for order in &stale {
            let id = job_id(order.order_id, order.new_order_event);
            let pending_s = (OffsetDateTime::now_utc() - order.created_at).whole_seconds();
            if dead.contains(&id) {
                done.dead += 1;
                tracing::warn!(order_id = %order.order_id, job_id = %id, pending_s,
                    "order {} is PENDING and its job is dead; see `orderly jobs dead`, then `orderly jobs requeue {id}`", order.order_id);
                continue;
            }
            let payload = serde_json::to_vec(&ProcessOrder {
                order_id: order.order_id,
                traceparent: order.traceparent.clone(),
            })
            .unwrap_or_default();
            let created = self
                .queue
                .enqueue(NewJob {
                    queue: PROCESS_ORDER.into(),
                    id: id.clone(),
                    payload: payload.into(),
                })
                .await?;
            if created {
                done.requeued += 1;
                metrics::counter!("reconciler_orders_requeued_total").increment(1);
                tracing::info!(order_id = %order.order_id, job_id = %id, pending_s,
                    "order {} was PENDING without a job; process_order enqueued again", order.order_id);
            } else {
                done.in_queue += 1;
            }
        }
        metrics::gauge!("reconciler_orders_with_dead_job").set(done.dead as f64);
        Ok(done)
    }

    /// A scheduled run: pages of stale orders one after the other until a
    /// short page (the end of the list) or [`RUN_BUDGET`], so a backlog of
    /// thousands is repaired in one run rather than one page per schedule tick.
    pub async fn run_pages(&self) -> Result<Reconciled, ReconcileError> {
        let started = std::time::Instant::now();
        let mut total = Reconciled::default();
        loop {
            let page = self.run_once().await?;
            total.pages += page.pages;
            total.looked_at += page.looked_at;
            total.requeued += page.requeued;
            total.in_queue += page.in_queue;
            total.dead += page.dead;
            if page.looked_at < u64::from(self.config.batch) || started.elapsed() >= RUN_BUDGET {
                return Ok(total);
            }
        }
    }

    /// The run as a maintenance task: what it did, in words, for the log.
    pub fn task(self: &Arc<Self>) -> Periodic {
        let reconciler = self.clone();
        let mut task = Periodic::new(TASK, self.config.after, move || {
            let reconciler = reconciler.clone();
            async move {
                let done = reconciler.run_pages().await;
                let outcome = if done.is_ok() { "ok" } else { "error" };
                metrics::counter!("reconciler_runs_total", "outcome" => outcome).increment(1);
                let done = done.map_err(|e| e.to_string())?;
                Ok(if done.requeued + done.dead == 0 {
                    String::new()
                } else {
                    format!(
                        "{} stale PENDING orders: {} jobs enqueued again, {} dead jobs left for a person, {} jobs still queued",
                        done.looked_at, done.requeued, done.dead, done.in_queue
                    )
                })
            }
        });
        task.lease_ttl = LEASE_TTL;
        task
    }
}

/// Run `reconciler` on the cron `schedule` (with seconds) until `shutdown`,
/// each run under `lease`.
pub async fn run(
    reconciler: Arc<Reconciler>,
    schedule: &str,
    lease: Arc<dyn Lease>,
    shutdown: Shutdown,
) -> Result<(), JobSchedulerError> {
    let task = reconciler.task();
    let mut scheduler = JobScheduler::new().await?;
    scheduler
        .add(Job::new_async(schedule, move |_, _| {
            let (task, lease) = (task.clone(), lease.clone());
            Box::pin(async move {
                maintenance::run_once(&task, &*lease).await;
            })
        })?)
        .await?;
    tracing::info!(
        schedule,
        after_s = reconciler.config.after.as_secs(),
        batch = reconciler.config.batch,
        "reconciler scheduled"
    );
    scheduler.start().await?;
    shutdown.wait().await;
    scheduler.shutdown().await
}
