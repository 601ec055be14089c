//! Prometheus-style metrics around any [`Bus`] and [`JobQueue`], whatever the
//! adapter (Watermill's metrics decorator is the model): wrap the port once
//! where it is wired and every service using it is measured the same way.
//!
//! Labels stay bounded: the subject (a handful in orderly), the queue name, an
//! error kind or the queue state; never a key, an order or a job id.
//!
//! | metric | labels | |
//! |---|---|---|
//! | `bus_published_total` | subject | publishes the broker accepted |
//! | `bus_publish_errors_total` | subject, error | publishes refused or failed |
//! | `bus_publish_duration_seconds` | subject | time until the broker accepted |
//! | `bus_delivered_total` | subject | deliveries handed to a subscriber (redeliveries included) |
//! | `bus_redelivered_total` | subject | deliveries with attempt > 1 |
//! | `bus_acked_total`, `bus_nacked_total` | subject | how group deliveries ended |
//! | `jobs_enqueued_total`, `jobs_duplicate_total` | queue | new jobs / ids already known |
//! | `jobs_reserved_total` | queue | attempts started |
//! | `jobs_completed_total` | queue | acked jobs |
//! | `jobs_retried_total`, `jobs_dead_total` | queue | failed attempts: retry scheduled / dead-lettered |
//! | `jobs_requeued_total` | queue | dead jobs sent back |
//! | `jobs_released_total` | queue | reservations handed back unfinished, no attempt spent |
//! | `job_queue_errors_total` | queue, op | calls the queue failed |
//! | `job_queue_depth` | queue, state | waiting, running, retrying, dead ([`watch_queue_depth`]) |

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{
    AckKind, Acker, Bus, BusError, DeadJob, DeadLetter, Delivery, Features, GroupOptions, Job,
    JobQueue, Message, NewJob, QueueError, QueueStats, RetryOutcome, StreamConfig, Subscription,
};

/// A [`Bus`] that counts publishes, deliveries, redeliveries, acks and nacks.
pub struct MeteredBus {
    inner: Arc<dyn Bus>,
}

impl MeteredBus {
    /// Measures `inner`.
    pub fn new(inner: Arc<dyn Bus>) -> Self {
        Self { inner }
    }

    /// `inner`, measured.
    pub fn wrap(inner: Arc<dyn Bus>) -> Arc<dyn Bus> {
        Arc::new(Self::new(inner))
    }
}

fn bus_error_kind(e: &BusError) -> &'static str {
    match e {
        BusError::InvalidSubject(..) => "invalid_subject",
        BusError::PayloadTooLarge { .. } => "payload_too_large",
        BusError::NoStream(_) => "no_stream",
        BusError::Closed => "closed",
        BusError::Unavailable(_) => "unavailable",
        BusError::Storage(_) => "storage",
        BusError::Other(_) => "other",
    }
}

/// Counts how a group delivery ended, then tells the adapter.
struct MeteredAcker {
    inner: Arc<dyn Acker>,
    subject: String,
}

impl Acker for MeteredAcker {
    fn settle(&self, kind: AckKind) {
        let name = match kind {
            AckKind::Ack => "bus_acked_total",
            AckKind::Nack(_) => "bus_nacked_total",
        };
        metrics::counter!(name, "subject" => self.subject.clone()).increment(1);
        self.inner.settle(kind);
    }

    fn in_progress(&self) {
        self.inner.in_progress();
    }
}

fn meter_delivery(delivery: Delivery) -> Delivery {
    let subject = delivery.message.subject.clone();
    metrics::counter!("bus_delivered_total", "subject" => subject.clone()).increment(1);
    if delivery.attempt > 1 {
        metrics::counter!("bus_redelivered_total", "subject" => subject.clone()).increment(1);
    }
    delivery.map_acker(|inner| Arc::new(MeteredAcker { inner, subject }))
}

/// The adapter's subscription, counting each delivery as it is taken.
fn meter_subscription(inner: Subscription) -> Subscription {
    inner.map_deliveries(meter_delivery)
}

#[async_trait]
impl Bus for MeteredBus {
    fn features(&self) -> Features {
        self.inner.features()
    }

    async fn ensure_stream(&self, config: StreamConfig) -> Result<(), BusError> {
        self.inner.ensure_stream(config).await
    }

    async fn publish(&self, message: Message) -> Result<(), BusError> {
        let subject = message.subject.clone();
        let started = Instant::now();
        let result = self.inner.publish(message).await;
        match &result {
            Ok(()) => {
                metrics::histogram!("bus_publish_duration_seconds", "subject" => subject.clone())
                    .record(started.elapsed().as_secs_f64());
                metrics::counter!("bus_published_total", "subject" => subject).increment(1);
            }
            Err(e) => {
                metrics::counter!("bus_publish_errors_total", "subject" => subject, "error" => bus_error_kind(e))
                    .increment(1);
            }
        }
        result
    }

    async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        Ok(meter_subscription(self.inner.subscribe(subject).await?))
    }

    async fn subscribe_group(
        &self,
        subject: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<Subscription, BusError> {
        Ok(meter_subscription(
            self.inner.subscribe_group(subject, group, options).await?,
        ))
    }

    async fn check(&self) -> Result<(), BusError> {
        self.inner.check().await
    }

    async fn dead_letters(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.inner.dead_letters(stream, limit).await
    }

    async fn replay_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.inner.replay_dead(stream, id).await
    }

    async fn purge_dead(&self, stream: &StreamConfig, id: &str) -> Result<bool, BusError> {
        self.inner.purge_dead(stream, id).await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}

/// A [`JobQueue`] that counts what happens to jobs.
pub struct MeteredQueue {
    inner: Arc<dyn JobQueue>,
}

impl MeteredQueue {
    /// Measures `inner`.
    pub fn new(inner: Arc<dyn JobQueue>) -> Self {
        Self { inner }
    }

    /// `inner`, measured.
    pub fn wrap(inner: Arc<dyn JobQueue>) -> Arc<dyn JobQueue> {
        Arc::new(Self::new(inner))
    }
}

fn count(name: &'static str, queue: &str) {
    metrics::counter!(name, "queue" => queue.to_string()).increment(1);
}

/// Counts a failed call, passing the result through.
fn observe<T>(queue: &str, op: &'static str, r: Result<T, QueueError>) -> Result<T, QueueError> {
    if r.is_err() {
        metrics::counter!("job_queue_errors_total", "queue" => queue.to_string(), "op" => op)
            .increment(1);
    }
    r
}

#[async_trait]
impl JobQueue for MeteredQueue {
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError> {
        let queue = job.queue.clone();
        let created = observe(&queue, "enqueue", self.inner.enqueue(job).await)?;
        count(
            if created {
                "jobs_enqueued_total"
            } else {
                "jobs_duplicate_total"
            },
            &queue,
        );
        Ok(created)
    }

    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        let job = observe(
            queue,
            "reserve",
            self.inner.reserve(queue, visibility, wait).await,
        )?;
        if job.is_some() {
            count("jobs_reserved_total", queue);
        }
        Ok(job)
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        observe(&job.queue, "ack", self.inner.ack(job).await)?;
        count("jobs_completed_total", &job.queue);
        Ok(())
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        let outcome = observe(&job.queue, "fail", self.inner.fail(job, error).await)?;
        count(
            match outcome {
                RetryOutcome::Retry(_) => "jobs_retried_total",
                RetryOutcome::Dead => "jobs_dead_total",
            },
            &job.queue,
        );
        Ok(outcome)
    }

    async fn reserve_many(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let jobs = observe(
            queue,
            "reserve",
            self.inner.reserve_many(queue, max, visibility, wait).await,
        )?;
        if !jobs.is_empty() {
            metrics::counter!("jobs_reserved_total", "queue" => queue.to_string())
                .increment(jobs.len() as u64);
        }
        Ok(jobs)
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        observe(
            &job.queue,
            "extend",
            self.inner.extend(job, visibility).await,
        )
    }

    async fn extend_many(&self, jobs: &[Job], visibility: Duration) -> Vec<Result<(), QueueError>> {
        let results = self.inner.extend_many(jobs, visibility).await;
        for (job, r) in jobs.iter().zip(&results) {
            if r.is_err() {
                metrics::counter!("job_queue_errors_total", "queue" => job.queue.clone(), "op" => "extend")
                    .increment(1);
            }
        }
        results
    }

    async fn release(&self, job: &Job, after: Duration) -> Result<(), QueueError> {
        observe(&job.queue, "release", self.inner.release(job, after).await)?;
        count("jobs_released_total", &job.queue);
        Ok(())
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        observe(queue, "stats", self.inner.stats(queue).await)
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        self.inner.dead_letters(queue, limit).await
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        let requeued = self.inner.requeue_dead(queue, id).await?;
        if requeued {
            count("jobs_requeued_total", queue);
        }
        Ok(requeued)
    }

    async fn purge_dead(&self, queue: &str) -> Result<u64, QueueError> {
        self.inner.purge_dead(queue).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.inner.check().await
    }
}

/// Set `job_queue_depth{queue, state}` from one [`JobQueue::stats`] call.
pub async fn record_queue_depth(
    queue: &dyn JobQueue,
    name: &str,
) -> Result<QueueStats, QueueError> {
    let stats = queue.stats(name).await?;
    for (state, value) in [
        ("waiting", stats.waiting),
        ("running", stats.running),
        ("retrying", stats.retrying),
        ("dead", stats.dead),
    ] {
        metrics::gauge!("job_queue_depth", "queue" => name.to_string(), "state" => state)
            .set(value as f64);
    }
    Ok(stats)
}

/// Refresh `job_queue_depth` for `name` now and every `every` until `stop`
/// resolves. A failing queue keeps the last values; the failure is logged once
/// per outage.
pub async fn watch_queue_depth(
    queue: Arc<dyn JobQueue>,
    name: &str,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut failing = false;
    loop {
        match record_queue_depth(queue.as_ref(), name).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(queue = name, error = %e, "cannot read the job queue's depth");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    use super::*;
    use crate::RetryPolicy;
    use crate::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};

    /// One recorder per test process; each test uses its own subject or queue
    /// names, so tests running side by side never read each other's series.
    fn handle() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other recorder in this test binary");
            handle
        })
    }

    /// The value of `name{…label="value"…}` (0 when absent).
    fn value(name: &str, label: (&str, &str)) -> f64 {
        let needle = format!("{}=\"{}\"", label.0, label.1);
        handle()
            .render()
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{'))
                    && l.contains(&needle)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn unique(prefix: &str) -> String {
        format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
    }

    async fn next(sub: &mut Subscription) -> Delivery {
        tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("a delivery within 5 s")
            .expect("subscription open")
    }

    #[tokio::test]
    async fn a_nacked_delivery_counts_as_redelivered_when_it_comes_back() {
        handle();
        let subject = unique("metered");
        let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
        let bus = MeteredBus::wrap(Arc::new(broker));
        bus.ensure_stream(StreamConfig::new(unique("s"), &[subject.as_str()]))
            .await
            .unwrap();
        let mut sub = bus
            .subscribe_group(&subject, "g", GroupOptions::default())
            .await
            .unwrap();
        bus.publish(Message::new(subject.clone(), "one"))
            .await
            .unwrap();
        let label = ("subject", subject.as_str());
        assert_eq!(value("bus_published_total", label), 1.0);

        let first = next(&mut sub).await;
        assert_eq!(first.attempt, 1);
        assert_eq!(value("bus_delivered_total", label), 1.0);
        assert_eq!(value("bus_redelivered_total", label), 0.0);
        assert!(first.nack(Duration::ZERO));
        assert_eq!(value("bus_nacked_total", label), 1.0);

        let again = next(&mut sub).await;
        assert_eq!(again.attempt, 2);
        assert!(again.ack());
        assert_eq!(value("bus_delivered_total", label), 2.0);
        assert_eq!(value("bus_redelivered_total", label), 1.0);
        assert_eq!(value("bus_acked_total", label), 1.0);
        // Acking twice is idempotent and counted once.
        assert!(again.ack());
        assert_eq!(value("bus_acked_total", label), 1.0);
    }

    #[tokio::test]
    async fn a_refused_publish_counts_as_an_error_by_kind() {
        handle();
        let subject = unique("nostream");
        let broker = EmbeddedBroker::open(BrokerConfig {
            max_payload: 8,
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let bus = MeteredBus::wrap(Arc::new(broker));
        let err = bus
            .publish(Message::new(subject.clone(), "far more than eight bytes"))
            .await
            .unwrap_err();
        assert!(matches!(err, BusError::PayloadTooLarge { .. }), "{err}");
        let label = ("subject", subject.as_str());
        assert_eq!(value("bus_publish_errors_total", label), 1.0);
        assert_eq!(value("bus_published_total", label), 0.0);
    }

    #[tokio::test]
    async fn dropping_a_metered_subscription_hands_its_deliveries_back() {
        handle();
        let subject = unique("handback");
        let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
        let bus = MeteredBus::wrap(Arc::new(broker));
        bus.ensure_stream(StreamConfig::new(unique("s"), &[subject.as_str()]))
            .await
            .unwrap();
        let options = GroupOptions {
            ack_wait: Duration::from_millis(200),
            ..GroupOptions::default()
        };
        let mut first = bus.subscribe_group(&subject, "g", options).await.unwrap();
        bus.publish(Message::new(subject.clone(), "x"))
            .await
            .unwrap();
        let d = next(&mut first).await;
        drop(d);
        drop(first);
        // Another member gets it again once the first let go.
        let mut second = bus.subscribe_group(&subject, "g", options).await.unwrap();
        let again = next(&mut second).await;
        assert!(again.attempt >= 2, "attempt {}", again.attempt);
        assert!(again.ack());
    }

    #[tokio::test]
    async fn job_outcomes_and_depth_are_counted_per_queue() {
        handle();
        let name = unique("q");
        let broker = EmbeddedBroker::open(BrokerConfig::default()).await.unwrap();
        let policy = RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(1),
            max_retries: 1,
            ..RetryPolicy::default()
        };
        let queue = MeteredQueue::wrap(Arc::new(
            EmbeddedQueue::open(&broker, policy).await.unwrap(),
        ));
        let job = |id: &str| NewJob {
            queue: name.clone(),
            id: id.into(),
            payload: "p".into(),
        };
        assert!(queue.enqueue(job("a")).await.unwrap());
        assert!(!queue.enqueue(job("a")).await.unwrap());
        assert!(queue.enqueue(job("b")).await.unwrap());
        let label = ("queue", name.as_str());
        assert_eq!(value("jobs_enqueued_total", label), 2.0);
        assert_eq!(value("jobs_duplicate_total", label), 1.0);

        record_queue_depth(queue.as_ref(), &name).await.unwrap();
        let depth = |state: &str| {
            let text = handle().render();
            text.lines()
                .filter(|l| {
                    l.starts_with("job_queue_depth{")
                        && l.contains(&format!("queue=\"{name}\""))
                        && l.contains(&format!("state=\"{state}\""))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        assert_eq!(depth("waiting"), 2.0);
        assert_eq!(depth("dead"), 0.0);

        let reserve = || queue.reserve(&name, Duration::from_secs(30), Duration::from_secs(2));
        let a = reserve().await.unwrap().expect("job a");
        queue.ack(&a).await.unwrap();
        assert_eq!(value("jobs_completed_total", label), 1.0);

        let b = reserve().await.unwrap().expect("job b");
        assert!(matches!(
            queue.fail(&b, "boom").await.unwrap(),
            RetryOutcome::Retry(_)
        ));
        let b = reserve().await.unwrap().expect("job b, retried");
        assert_eq!(queue.fail(&b, "boom").await.unwrap(), RetryOutcome::Dead);
        assert_eq!(value("jobs_retried_total", label), 1.0);
        assert_eq!(value("jobs_dead_total", label), 1.0);
        assert_eq!(value("jobs_reserved_total", label), 3.0);

        record_queue_depth(queue.as_ref(), &name).await.unwrap();
        assert_eq!(depth("dead"), 1.0);
        assert_eq!(depth("waiting"), 0.0);
    }
}
