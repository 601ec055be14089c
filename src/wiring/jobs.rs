//! The consumer and the worker roles, on the process's bus and job queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use orderly_bus::metered;
use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_bus::{Backoff, Bus, BusError, JobQueue};
use orderly_core::Shutdown;
use orderly_core::config::Settings;
use orderly_orders::OrderService;
use orderly_worker::{Worker, WorkerConfig};

use super::messaging::Messaging;

/// Waits before starting the consumer again while the bus cannot be reached.
const CONSUMER_RETRY_FIRST: Duration = Duration::from_secs(1);
const CONSUMER_RETRY_MAX: Duration = Duration::from_secs(10);
/// How often the worker's process refreshes `job_queue_depth`.
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(5);

pub fn start_consumer(messaging: &Messaging, shutdown: &Shutdown, tasks: &mut JoinSet<Result<()>>) {
    tasks.spawn(run_consumer(
        messaging.bus.clone(),
        messaging.jobs.queue.clone(),
        shutdown.clone(),
    ));
}

/// The consumer, started again while the bus cannot be reached.
async fn run_consumer(
    bus: Arc<dyn Bus>,
    queue: Arc<dyn JobQueue>,
    shutdown: Shutdown,
) -> Result<()> {
    let mut backoff = Backoff::new(CONSUMER_RETRY_FIRST, CONSUMER_RETRY_MAX);
    loop {
        let delay = match orderly_consumer::run(bus.clone(), queue.clone(), shutdown.clone()).await
        {
            Ok(()) => return Ok(()),
            Err(BusError::Unavailable(why)) => {
                let delay = backoff.next_delay();
                tracing::warn!(%why, retry_in_s = delay.as_secs_f64(), "consumer cannot reach the bus; retrying");
                delay
            }
            Err(e) => return Err(e).context("consumer"),
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return Ok(()),
        }
    }
}

/// The worker's job slots, the queue's periodic maintenance, and the queue
/// depth gauge.
pub fn start_worker(
    settings: &Settings,
    service: Arc<OrderService>,
    messaging: &Messaging,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<Result<()>>,
) {
    let w = &settings.worker;
    let jobs = &messaging.jobs;
    let worker = Arc::new(Worker::new(
        jobs.queue.clone(),
        service,
        WorkerConfig {
            payment_delay: w.payment_delay,
            concurrency: w.concurrency,
            visibility_timeout: w.visibility_timeout,
            stop_grace: w.stop_grace,
        },
    ));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        worker.run(stop).await;
        Ok(())
    });
    let (periodic, lease, stop) = (
        jobs.maintenance.clone(),
        jobs.lease.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        orderly_worker::maintenance::run(periodic, lease, stop)
            .await
            .context("maintenance scheduler")
    });
    let (queue, stop) = (jobs.queue.clone(), shutdown.clone());
    tasks.spawn(async move {
        metered::watch_queue_depth(queue, PROCESS_ORDER, QUEUE_DEPTH_EVERY, stop.wait()).await;
        Ok(())
    });
}
