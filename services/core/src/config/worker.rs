//! The worker: how many jobs at once, how long a payment takes, retries.

use std::time::Duration;

use super::ConfigError;
use super::env::{Env, invalid, millis};

/// How the worker runs jobs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// How long the simulated payment takes (`WORKER_PAYMENT_DELAY_MS`).
    pub payment_delay: Duration,
    /// Most jobs in flight at once (`WORKER_CONCURRENCY`). A payment is a
    /// wait, so this is sized by memory (a few KiB per job), not by cores.
    pub concurrency: usize,
    /// A job not acknowledged within this is delivered again.
    pub visibility_timeout: Duration,
    /// First retry delay of a failed job.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// Retries before a job is given up.
    pub max_retries: u32,
    /// How long a stop waits for jobs in flight before handing the rest back
    /// to the queue (`WORKER_STOP_GRACE`, seconds).
    pub stop_grace: Duration,
}

/// Jobs in flight by default: a 2 s payment at the API's create rate on a
/// small host (~2,000/s) needs ~4,000; twice that leaves room for a burst.
pub(super) const DEFAULT_CONCURRENCY: usize = 8_000;
/// Below the kill timeouts of Docker (10 s after `stop_grace_period`, set
/// longer in compose), Nomad (`kill_timeout`) and Kubernetes (30 s).
pub(super) const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(15);

/// Seconds, whole or decimal (`15`, `0.5`), zero or more.
fn seconds(env: &Env, name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let Some((name, value)) = env.get(&[name]) else {
        return Ok(default);
    };
    match value.trim().parse::<f64>() {
        Ok(s) if (0.0..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(invalid(
            &name,
            &value,
            "expected a number of seconds from 0 to 86400, e.g. 15 or 0.5",
        )),
    }
}

pub(super) fn worker_settings(env: &Env) -> Result<WorkerSettings, ConfigError> {
    let concurrency: usize = env.parse(&["WORKER_CONCURRENCY"], DEFAULT_CONCURRENCY)?;
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
        stop_grace: seconds(env, "WORKER_STOP_GRACE", DEFAULT_STOP_GRACE)?,
    })
}
