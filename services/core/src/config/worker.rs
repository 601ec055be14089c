//! The worker: how many jobs at once, how long a payment takes, retries.

use std::time::Duration;

use super::ConfigError;
use super::env::{Env, invalid, millis};

/// How the worker runs jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long the simulated payment takes (`WORKER_PAYMENT_DELAY_MS`).
    pub payment_delay: Duration,
    /// Jobs run at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// A job not acknowledged within this is delivered again.
    pub visibility_timeout: Duration,
    /// First retry delay of a failed job.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// Retries before a job is given up.
    pub max_retries: u32,
}

pub(super) fn worker_settings(env: &Env) -> Result<WorkerSettings, ConfigError> {
    let concurrency: usize = env.parse(&["WORKER_CONCURRENCY"], 4)?;
    if concurrency == 0 {
        return Err(invalid("WORKER_CONCURRENCY", "0", "must be at least 1"));
    }
    Ok(WorkerSettings {
        payment_delay: millis(env, &["WORKER_PAYMENT_DELAY_MS"], 2000)?,
        concurrency,
        visibility_timeout: Duration::from_secs(
            env.parse(&["WORKER_VISIBILITY_TIMEOUT_SECONDS"], 30)?,
        ),
        retry_base: millis(env, &["JOB_RETRY_BASE_MS"], 1000)?,
        retry_cap: millis(env, &["JOB_RETRY_CAP_MS"], 60_000)?,
        max_retries: env.parse(&["JOB_MAX_RETRIES"], 3)?,
    })
}
