//! The worker: runs `process_order` jobs (the simulated payment) from the job queue.

pub mod maintenance;
pub mod reconciler;

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::schema::jobs::{PROCESS_ORDER, ProcessOrder};
use orderly_bus::{Backoff, Job, JobQueue, RetryOutcome};
use orderly_core::Shutdown;
use orderly_core::trace_context::TraceContext;
use orderly_orders::{OrderService, OrdersError, PayOutcome};
use tracing::Instrument;

/// Waits while the queue cannot be reached: doubling from the first to the cap.
const RESERVE_RETRY_FIRST: Duration = Duration::from_millis(100);
const RESERVE_RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub payment_delay: Duration,
    pub concurrency: usize,
    pub visibility_timeout: Duration,
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
}

pub struct Worker {
    queue: Arc<dyn JobQueue>,
    orders: Arc<OrderService>,
    config: WorkerConfig,
}

impl Worker {
    pub fn new(queue: Arc<dyn JobQueue>, orders: Arc<OrderService>, config: WorkerConfig) -> Self {
        Self {
            queue,
            orders,
            config,
        }
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
        match self.orders.pay(id, Some(&trace.traceparent())).await {
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
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }

    /// Run the attempt, keeping the reservation alive while it runs.
    async fn process(&self, job: Job) {
        let keep_alive = async {
            let every = (self.config.visibility_timeout / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = self
                    .queue
                    .extend(&job, self.config.visibility_timeout)
                    .await
                {
                    tracing::warn!(job_id = %job.id, error = %e, "cannot extend the job's reservation");
                }
            }
        };
        let outcome = tokio::select! {
            o = self.try_execute(&job) => o,
            _ = keep_alive => unreachable_outcome(),
        };
        let settled = match &outcome {
            Outcome::Completed => self.queue.ack(&job).await.map(|_| ()),
            Outcome::Failed(error) | Outcome::Poison(error) => {
                metrics::counter!("worker_job_failures_total").increment(1);
                let error = if matches!(outcome, Outcome::Poison(_)) {
                    format!("poison: {error}")
                } else {
                    error.clone()
                };
                match self.queue.fail(&job, &error).await {
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
            // The reservation expires and the job runs again: jobs are idempotent.
            tracing::warn!(job_id = %job.id, error = %e, "cannot settle the job with the queue");
        }
    }

    async fn run_slot(self: Arc<Self>, slot: usize, shutdown: Shutdown) {
        let mut backoff = Backoff::new(RESERVE_RETRY_FIRST, RESERVE_RETRY_MAX);
        while !shutdown.is_triggered() {
            let reserved = tokio::select! {
                r = self.queue.reserve(PROCESS_ORDER, self.config.visibility_timeout, Duration::from_secs(1)) => r,
                _ = shutdown.wait() => break,
            };
            match reserved {
                Ok(Some(job)) => {
                    backoff.reset();
                    // A job in hand is finished even during shutdown (bounded by the payment delay).
                    self.process(job).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(slot, error = %e, "cannot reserve a job; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                        _ = shutdown.wait() => break,
                    }
                }
            }
        }
    }

    /// Run `concurrency` job slots until shutdown; in-flight jobs finish first.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        tracing::info!(
            concurrency = self.config.concurrency,
            queue = PROCESS_ORDER,
            "worker started"
        );
        let slots: Vec<_> = (0..self.config.concurrency)
            .map(|slot| tokio::spawn(self.clone().run_slot(slot, shutdown.clone())))
            .collect();
        for slot in slots {
            let _ = slot.await;
        }
        tracing::info!("worker stopped");
    }
}

/// The keep-alive loop never ends on its own.
fn unreachable_outcome() -> Outcome {
    Outcome::Failed("keep-alive loop ended".into())
}
