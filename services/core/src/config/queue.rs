//! The job queue, chosen independently of the bus (`JOB_QUEUE`).

use super::env::{Env, invalid};
use super::stores::{redis_url, with_redis_db};
use super::tls::{TlsFiles, redis_tls};
use super::{ConfigError, Secret};

/// Where jobs wait for the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobQueueKind {
    /// On the embedded broker, in the data directory.
    Embedded,
    /// Redis Streams (`adapters/redis`).
    Redis,
}

/// The job queue, chosen independently of the bus (`JOB_QUEUE`).
#[derive(Debug, Clone)]
pub struct JobQueueSettings {
    /// Embedded or Redis.
    pub kind: JobQueueKind,
    /// The queue's Redis (DB 0): `CELERY_BROKER_URL`, else `REDIS_URL`, else `ORDERS_REDIS_URL`.
    pub redis_url: Option<Secret>,
    /// Results of finished jobs: `CELERY_RESULT_BACKEND`, else DB 1 of the queue's Redis.
    pub results_url: Option<Secret>,
    /// First part of the queue's Redis keys (`JOB_QUEUE_PREFIX`, default `orderly`).
    pub prefix: String,
    /// Deliveries without an ack or failure before a job is poison (`JOB_MAX_DELIVERIES`).
    pub max_deliveries: u32,
    /// `REDIS_CA_FILE` and the client certificate, for `rediss://` URLs.
    pub redis_tls: TlsFiles,
}

/// `JOB_QUEUE=embedded|redis`; unset: redis when a Redis URL for it is set.
pub(super) fn job_queue_settings(env: &Env) -> Result<JobQueueSettings, ConfigError> {
    let url = redis_url(env, &["CELERY_BROKER_URL", "REDIS_URL", "ORDERS_REDIS_URL"])?;
    let kind = match env.get(&["JOB_QUEUE"]) {
        None if url.is_some() => JobQueueKind::Redis,
        None => JobQueueKind::Embedded,
        Some((_, v)) if v == "embedded" => JobQueueKind::Embedded,
        Some((name, v)) if v == "redis" => {
            if url.is_none() {
                return Err(invalid(
                    &name,
                    &v,
                    "needs the queue's Redis: set REDIS_URL (or CELERY_BROKER_URL)",
                ));
            }
            JobQueueKind::Redis
        }
        Some((name, v)) => return Err(invalid(&name, &v, "expected embedded or redis")),
    };
    let results = match redis_url(env, &["CELERY_RESULT_BACKEND"])? {
        Some((_, u)) => Some(u),
        None => url.as_ref().map(|(_, u)| with_redis_db(u, 1)),
    };
    let prefix = env
        .value(&["JOB_QUEUE_PREFIX"])
        .unwrap_or_else(|| "orderly".into());
    if prefix.contains(char::is_whitespace) {
        return Err(invalid("JOB_QUEUE_PREFIX", &prefix, "no spaces"));
    }
    let max_deliveries: u32 = env.parse(&["JOB_MAX_DELIVERIES"], 4)?;
    if max_deliveries == 0 {
        return Err(invalid("JOB_MAX_DELIVERIES", "0", "must be at least 1"));
    }
    Ok(JobQueueSettings {
        kind,
        redis_url: url.map(|(_, u)| Secret::new(u.to_string())),
        results_url: results.map(|u| Secret::new(u.to_string())),
        prefix,
        max_deliveries,
        redis_tls: redis_tls(env)?,
    })
}
