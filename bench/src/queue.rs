//! Job queue end to end: producers enqueue no-op jobs (a bounded number
//! outstanding), workers reserve and ack them; jobs/s counts the acks, the
//! latency is enqueue → ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use orderly_bus::{JobQueue, NewJob};
use tokio::sync::Semaphore;

use crate::report::{Counted, micros_histogram};

#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueSpec {
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) producers: usize,
    pub(crate) workers: usize,
    /// Jobs enqueued but not yet acked, at most.
    pub(crate) window: usize,
}

impl QueueSpec {
    pub(crate) fn new(warmup: Duration, duration: Duration) -> Self {
        Self {
            warmup,
            duration,
            producers: 4,
            workers: 8,
            window: 2048,
        }
    }
}

pub(crate) async fn run(
    queue: Arc<dyn JobQueue>,
    queue_name: &str,
    spec: QueueSpec,
    done: Arc<AtomicU64>,
) -> Result<Counted> {
    let base = Instant::now();
    let measure_from = base + spec.warmup;
    let end = measure_from + spec.duration;
    let window = Arc::new(Semaphore::new(spec.window.max(1)));
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let mut producers = tokio::task::JoinSet::new();
    for _ in 0..spec.producers.max(1) {
        let (q, window, errors, seq) = (queue.clone(), window.clone(), errors.clone(), seq.clone());
        let (name, run_id) = (queue_name.to_string(), run_id.clone());
        producers.spawn(async move {
            while Instant::now() < end {
                let left = end.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, window.acquire()).await {
                    Ok(Ok(p)) => p.forget(),
                    _ => break,
                }
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let sent = base.elapsed().as_nanos() as u64;
                let job = NewJob {
                    queue: name.clone(),
                    id: format!("{run_id}-{n}"),
                    payload: Bytes::copy_from_slice(&sent.to_le_bytes()),
                };
                if q.enqueue(job).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    window.add_permits(1);
                }
            }
        });
    }
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.workers.max(1) {
        let (q, window, errors, done) =
            (queue.clone(), window.clone(), errors.clone(), done.clone());
        let name = queue_name.to_string();
        workers.spawn(async move {
            let mut hist = micros_histogram();
            let mut count = 0u64;
            while Instant::now() < end {
                let job = match q
                    .reserve(&name, Duration::from_secs(30), Duration::from_millis(100))
                    .await
                {
                    Ok(Some(job)) => job,
                    Ok(None) => continue,
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                if q.ack(&job).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                window.add_permits(1);
                done.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let mut b = [0u8; 8];
                if job.payload.len() >= 8 {
                    b.copy_from_slice(&job.payload[..8]);
                }
                let sent = base + Duration::from_nanos(u64::from_le_bytes(b));
                if sent >= measure_from && now <= end {
                    count += 1;
                    let us = (now - sent).as_micros().max(1) as u64;
                    let high = hist.high();
                    let _ = hist.record(us.min(high));
                }
            }
            (count, hist)
        });
    }
    while producers.join_next().await.is_some() {}
    let mut result = Counted {
        count: 0,
        errors: 0,
        latency_us: micros_histogram(),
        seconds: spec.duration.as_secs_f64(),
    };
    while let Some(joined) = workers.join_next().await {
        let (count, hist) = joined.map_err(|e| anyhow!("worker task: {e}"))?;
        result.count += count;
        let _ = result.latency_us.add(&hist);
    }
    result.errors = errors.load(Ordering::Relaxed);
    Ok(result)
}
