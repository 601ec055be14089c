//! The reconciler, in every process that runs the worker: on the process's
//! job queue and orders store, under the queue's lease (a Redis lease shared
//! by every instance on that queue; in-process for the embedded queue, which
//! one process owns).

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinSet;

use orderly_core::Shutdown;
use orderly_core::config::Settings;
use orderly_orders::OrderService;
use orderly_worker::reconciler::{self, Reconciler, ReconcilerConfig};

use super::messaging::Messaging;

pub fn start(
    settings: &Settings,
    service: &OrderService,
    messaging: &Messaging,
    shutdown: &Shutdown,
    tasks: &mut JoinSet<Result<()>>,
) {
    let r = &settings.reconcile;
    let reconciler = Arc::new(Reconciler::new(
        service.store().clone(),
        messaging.jobs.queue.clone(),
        ReconcilerConfig {
            after: r.after,
            batch: r.batch,
        },
    ));
    let (schedule, lease, stop) = (
        r.schedule.clone(),
        messaging.jobs.lease.clone(),
        shutdown.clone(),
    );
    tasks.spawn(async move {
        reconciler::run(reconciler, &schedule, lease, stop)
            .await
            .with_context(|| format!("reconciler (RECONCILE_SCHEDULE={schedule:?})"))
    });
}
