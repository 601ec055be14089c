//! The job queue's wiring (`JOB_QUEUE=embedded|redis`) and its periodic
//! maintenance; also the embedded broker on the data directory, which the
//! embedded bus and the embedded queue share.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use orderly_bus::embedded::{EmbeddedBroker, EmbeddedQueue};
use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_bus::{JobQueue, Lease, LocalLease, RetryPolicy};
use orderly_core::config::{JobQueueKind, Settings, redact_url};
use orderly_redis::{RedisQueue, RedisQueueConfig, RedisTls};
use orderly_worker::maintenance::Periodic;

/// The job queue, the periodic jobs it needs and the lease they run under.
pub struct QueueParts {
    pub queue: Arc<dyn JobQueue>,
    pub maintenance: Vec<Periodic>,
    pub lease: Arc<dyn Lease>,
}

fn policy(settings: &Settings) -> RetryPolicy {
    let w = &settings.worker;
    RetryPolicy {
        base: w.retry_base,
        cap: w.retry_cap,
        max_retries: w.max_retries,
        ..RetryPolicy::default()
    }
}

/// The embedded broker on the data directory (`ORDERLY_DATA_DIR`).
pub async fn open_broker(settings: &Settings) -> Result<EmbeddedBroker> {
    EmbeddedBroker::open(super::broker::broker_config(settings))
        .await
        .context("embedded broker")
}

/// The configured queue. `broker` is the embedded broker if the bus already
/// opened it (the data directory can be opened once); otherwise an embedded
/// queue opens its own.
pub async fn open_queue(
    settings: &Settings,
    broker: Option<&EmbeddedBroker>,
) -> Result<QueueParts> {
    match settings.jobs.kind {
        JobQueueKind::Embedded => {
            let opened;
            let broker = match broker {
                Some(b) => b,
                None => {
                    opened = open_broker(settings).await?;
                    &opened
                }
            };
            let queue = EmbeddedQueue::open(broker, policy(settings))
                .await
                .context("embedded job queue")?;
            // Retries, reclaim and expiry happen inside the embedded queue;
            // nothing to schedule.
            Ok(QueueParts {
                queue: Arc::new(queue),
                maintenance: Vec::new(),
                lease: Arc::new(LocalLease::new()),
            })
        }
        JobQueueKind::Redis => {
            let queue = open_redis(settings).await?;
            Ok(QueueParts {
                maintenance: redis_maintenance(&queue),
                lease: Arc::new(queue.lease()),
                queue: Arc::new(queue),
            })
        }
    }
}

async fn open_redis(settings: &Settings) -> Result<RedisQueue> {
    let jobs = &settings.jobs;
    let url = jobs
        .redis_url
        .as_ref()
        .context("JOB_QUEUE=redis needs REDIS_URL or CELERY_BROKER_URL")?;
    let mut config = RedisQueueConfig::new(url.expose());
    config.results_url = jobs.results_url.as_ref().map(|u| u.expose().to_string());
    config.prefix = jobs.prefix.clone();
    config.policy = policy(settings);
    config.max_deliveries = jobs.max_deliveries;
    config.tls = RedisTls {
        ca_file: jobs.redis_tls.ca_file.clone(),
        client_cert_file: jobs.redis_tls.cert_file.clone(),
        client_key_file: jobs.redis_tls.key_file.clone(),
    };
    RedisQueue::connect(config)
        .await
        .with_context(|| format!("Redis job queue at {}", redact_url(url.expose())))
}

/// Reclaim (poison sweep), retry mover and trimming for `process_order`.
/// `reserve` moves due retries and takes over expired jobs itself; these
/// runs cover the time no worker is asking. The outbox needs no sweep here:
/// every orders process's relay polls it each second and claims rows, so two
/// relays never send one row twice.
fn redis_maintenance(queue: &RedisQueue) -> Vec<Periodic> {
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    vec![
        Periodic::new("reclaim", Duration::from_secs(5), move || {
            let q = q1.clone();
            async move {
                let r = q
                    .sweep_expired(PROCESS_ORDER)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if r.poisoned + r.expired == 0 {
                    String::new()
                } else {
                    format!(
                        "{} poison jobs dead-lettered, {} expired jobs wait for a worker",
                        r.poisoned, r.expired
                    )
                })
            }
        }),
        Periodic::new("retry-mover", Duration::from_secs(1), move || {
            let q = q2.clone();
            async move {
                let n = q
                    .move_due_retries(PROCESS_ORDER)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if n == 0 {
                    String::new()
                } else {
                    format!("{n} due retries back in the stream")
                })
            }
        }),
        Periodic::new("trim", Duration::from_secs(60), move || {
            let q = q3.clone();
            async move {
                let r = q
                    .trim(PROCESS_ORDER, Duration::from_secs(24 * 3600))
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(if r.trimmed + r.consumers_forgotten == 0 {
                    String::new()
                } else {
                    format!(
                        "{} acked entries trimmed, {} idle consumers forgotten",
                        r.trimmed, r.consumers_forgotten
                    )
                })
            }
        }),
    ]
}

/// The queue alone, for `orderly jobs …`, which inspects it through the port.
pub async fn open_for_inspection(settings: &Settings) -> Result<Arc<dyn JobQueue>> {
    Ok(match settings.jobs.kind {
        JobQueueKind::Redis => open_queue(settings, None).await?.queue,
        JobQueueKind::Embedded => {
            let broker = open_broker(settings).await.with_context(|| {
                format!(
                    "the embedded job queue lives in the data directory {}; stop the orderly process using it (e.g. `orderly all`) or run `orderly jobs` where JOB_QUEUE=redis",
                    settings.data_dir.display()
                )
            })?;
            open_queue(settings, Some(&broker)).await?.queue
        }
    })
}
