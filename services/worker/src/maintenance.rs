//! Periodic maintenance on tokio-cron-scheduler. Every instance schedules the
//! same tasks; each run first takes the task's lease, so across all instances
//! one runs it at a time and the others skip that tick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use orderly_bus::Lease;
use orderly_core::Shutdown;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

type RunFn = dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync;

/// One periodic task. `run` says what it did (logged at debug when nothing, info otherwise).
#[derive(Clone)]
pub struct Periodic {
    pub name: String,
    pub every: Duration,
    /// How long the lease lasts if its holder dies mid-run (longer than a run takes).
    pub lease_ttl: Duration,
    run: Arc<RunFn>,
}

impl Periodic {
    pub fn new<F, Fut>(name: impl Into<String>, every: Duration, run: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        // The scheduler counts repeats in whole seconds.
        let every = Duration::from_secs(every.as_secs_f64().ceil().max(1.0) as u64);
        Self {
            name: name.into(),
            every,
            lease_ttl: (every * 4).max(Duration::from_secs(30)),
            run: Arc::new(move || Box::pin(run())),
        }
    }
}

impl std::fmt::Debug for Periodic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Periodic")
            .field("name", &self.name)
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// One tick of `task`: under its lease, or not at all. Returns whether it ran.
pub async fn run_once(task: &Periodic, lease: &dyn Lease) -> bool {
    let lease_name = format!("maintenance:{}", task.name);
    let token = match lease.try_acquire(&lease_name, task.lease_ttl).await {
        Ok(Some(token)) => token,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(task = %task.name, error = %e, "cannot take the maintenance lease; skipping this run");
            return false;
        }
    };
    match (task.run)().await {
        Ok(done) if done.is_empty() => tracing::debug!(task = %task.name, "maintenance ran"),
        Ok(done) => tracing::info!(task = %task.name, "maintenance: {done}"),
        Err(e) => tracing::warn!(task = %task.name, error = %e, "maintenance failed"),
    }
    if let Err(e) = lease.release(&lease_name, &token).await {
        tracing::warn!(task = %task.name, error = %e, "cannot release the maintenance lease; it expires by itself");
    }
    true
}

/// Schedule `tasks` until `shutdown`.
pub async fn run(
    tasks: Vec<Periodic>,
    lease: Arc<dyn Lease>,
    shutdown: Shutdown,
) -> Result<(), JobSchedulerError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let mut scheduler = JobScheduler::new().await?;
    for task in tasks {
        let lease = lease.clone();
        let every = task.every;
        tracing::info!(task = %task.name, every_ms = every.as_millis() as u64, "maintenance scheduled");
        scheduler
            .add(Job::new_repeated_async(every, move |_, _| {
                let (task, lease) = (task.clone(), lease.clone());
                Box::pin(async move {
                    run_once(&task, &*lease).await;
                })
            })?)
            .await?;
    }
    scheduler.start().await?;
    shutdown.wait().await;
    scheduler.shutdown().await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use orderly_bus::LocalLease;

    use super::*;

    /// Two instances sharing a lease never run the task at the same time.
    #[tokio::test]
    async fn a_held_lease_makes_the_other_instance_skip() {
        let running = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let task = {
            let (running, runs) = (running.clone(), runs.clone());
            Periodic::new("trim", Duration::from_secs(1), move || {
                let (running, runs) = (running.clone(), runs.clone());
                async move {
                    assert_eq!(
                        running.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two runs at once"
                    );
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(String::new())
                }
            })
        };
        let lease: Arc<dyn Lease> = Arc::new(LocalLease::new());
        let (a, b) = tokio::join!(run_once(&task, &*lease), run_once(&task, &*lease));
        assert!(a ^ b, "exactly one instance ran ({a}, {b})");
        assert!(run_once(&task, &*lease).await, "released after the run");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_scheduler_repeats_a_task_until_shutdown() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let task = Periodic::new("tick", Duration::from_secs(1), move || {
            let runs = counted.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(String::new())
            }
        });
        let shutdown = Shutdown::new();
        let handle = tokio::spawn(run(
            vec![task],
            Arc::new(LocalLease::new()),
            shutdown.clone(),
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task never ran twice"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("the scheduler stops on shutdown")
            .expect("no panic")
            .expect("a clean stop");
    }
}
