//! The jobs this worker holds: what the one keep-alive timer extends and what
//! a stop hands back. One map for all of them, not one loop per job.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use orderly_bus::Job;
use tokio::task::AbortHandle;
use tokio::time::Instant;

struct Entry {
    job: Job,
    /// When the reservation was taken or last extended.
    kept_at: Instant,
    task: Option<AbortHandle>,
}

#[derive(Default)]
pub(crate) struct InFlight {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Entry>>,
}

impl InFlight {
    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // Plain data: a panic elsewhere while holding it leaves it usable.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `job`, reserved by a call made at `reserved_at`; returns its key.
    pub(crate) fn insert(&self, job: Job, reserved_at: Instant) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let mut jobs = self.jobs();
        jobs.insert(
            key,
            Entry {
                job,
                kept_at: reserved_at,
                task: None,
            },
        );
        metrics::gauge!("worker_jobs_in_flight").set(jobs.len() as f64);
        key
    }

    /// The task running the job, so a stop past its grace can end it.
    pub(crate) fn set_task(&self, key: u64, task: AbortHandle) {
        if let Some(e) = self.jobs().get_mut(&key) {
            e.task = Some(task);
        }
    }

    pub(crate) fn remove(&self, key: u64) {
        let mut jobs = self.jobs();
        jobs.remove(&key);
        metrics::gauge!("worker_jobs_in_flight").set(jobs.len() as f64);
    }

    pub(crate) fn len(&self) -> usize {
        self.jobs().len()
    }

    /// The jobs last kept alive at or before `before`.
    pub(crate) fn due(&self, before: Instant) -> Vec<(u64, Job)> {
        self.jobs()
            .iter()
            .filter(|(_, e)| e.kept_at <= before)
            .map(|(k, e)| (*k, e.job.clone()))
            .collect()
    }

    pub(crate) fn kept(&self, key: u64, at: Instant) {
        if let Some(e) = self.jobs().get_mut(&key) {
            e.kept_at = at;
        }
    }

    /// Every job still held, with its task; the map is empty afterwards.
    pub(crate) fn drain(&self) -> Vec<(Job, Option<AbortHandle>)> {
        let mut jobs = self.jobs();
        let left = jobs.drain().map(|(_, e)| (e.job, e.task)).collect();
        metrics::gauge!("worker_jobs_in_flight").set(0.0);
        left
    }
}
