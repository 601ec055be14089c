//! The queue section: no-op jobs through the embedded and the Redis queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::{Bus, JobQueue, RetryPolicy};
use orderly_redis::{RedisQueue, RedisQueueConfig};

use crate::ids::{MeasurementId, QueueTarget};
use crate::progress::Progress;
use crate::queue::{self, QueueSpec};
use crate::report::{Counted, Measurement, Report};
use crate::sections::{Config, summary};

const NAME: &str = "enqueue → reserve → ack (no-op)";

pub(super) async fn section(cfg: &Config, r: &mut Report) {
    queue_embedded(cfg, r).await;
    redis(cfg, r).await;
}

fn target_name(target: QueueTarget) -> &'static str {
    match target {
        QueueTarget::Embedded => "embedded queue (file log)",
        QueueTarget::Redis => "Redis queue",
    }
}

fn measurement(target: QueueTarget, res: Result<Counted>) -> Measurement {
    Measurement::new(MeasurementId::Queue(target), NAME, target_name(target))
        .counted(res, "no job completed in the measured window")
}

/// One measured run of `q`, with its progress line.
async fn measure(cfg: &Config, target: QueueTarget, q: Arc<dyn JobQueue>) -> Measurement {
    let p = Progress::start(
        format!("queue {}", target_name(target)),
        cfg.run_time(),
        cfg.quiet,
    );
    let spec = QueueSpec::new(cfg.warmup, cfg.duration);
    let res = queue::run(q, "bench", spec, p.done.clone()).await;
    let m = measurement(target, res);
    p.finish(&summary(&m));
    m
}

/// The embedded queue on a file log in a temporary directory.
pub async fn queue_embedded(cfg: &Config, r: &mut Report) {
    let target = QueueTarget::Embedded;
    let run = async {
        let dir = tempfile::tempdir()?;
        let broker = EmbeddedBroker::open(BrokerConfig {
            data_dir: Some(dir.path().to_path_buf()),
            ..BrokerConfig::default()
        })
        .await?;
        let q: Arc<dyn JobQueue> =
            Arc::new(EmbeddedQueue::open(&broker, RetryPolicy::default()).await?);
        let m = measure(cfg, target, q).await;
        broker.close().await;
        Ok::<_, anyhow::Error>(m)
    };
    let m = run.await.unwrap_or_else(|e| measurement(target, Err(e)));
    r.measurements.push(m);
}

/// The Redis queue under a prefix of its own, deleted afterwards.
async fn redis(cfg: &Config, r: &mut Report) {
    let target = QueueTarget::Redis;
    let skipped = |why: String| {
        Measurement::new(MeasurementId::Queue(target), NAME, target_name(target)).skipped(why)
    };
    let Some(url) = cfg.redis_url.clone() else {
        r.measurements
            .push(skipped("no Redis URL (--redis-url)".into()));
        return;
    };
    let mut qc = RedisQueueConfig::new(url.clone());
    qc.prefix = format!("orderly-bench-{}", uuid::Uuid::new_v4().simple());
    match tokio::time::timeout(Duration::from_secs(5), RedisQueue::connect(qc)).await {
        Ok(Ok(rq)) => {
            let m = measure(cfg, target, Arc::new(rq.clone())).await;
            r.measurements.push(m);
            if let Err(e) = rq.destroy("bench").await {
                r.notes
                    .push(format!("could not delete the bench's Redis keys: {e}"));
            }
        }
        Ok(Err(e)) => r
            .measurements
            .push(skipped(format!("no Redis at {url}: {e}"))),
        Err(_) => r
            .measurements
            .push(skipped(format!("no answer from Redis at {url} within 5 s"))),
    }
}
