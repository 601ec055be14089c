//! The consumer while the job queue is down for longer than the event's
//! 20 deliveries at one a second would last: the event is held (not nacked
//! into the dead letters) and its job is enqueued once the queue is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orderly_bus::embedded::{BrokerConfig, EmbeddedBroker, EmbeddedQueue};
use orderly_bus::schema::events::{self, NewOrder};
use orderly_bus::schema::jobs::PROCESS_ORDER;
use orderly_bus::{
    Bus, DeadJob, Job, JobQueue, Message, NewJob, QueueError, QueueStats, RetryOutcome,
    RetryPolicy, header,
};
use orderly_core::Shutdown;
use tokio::time::Instant;

/// The embedded queue, unreachable while `down` is set.
struct FlakyQueue {
    inner: EmbeddedQueue,
    down: AtomicBool,
    enqueue_calls: AtomicUsize,
}

impl FlakyQueue {
    fn gate(&self) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            Err(QueueError::Unavailable("connection refused (test)".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl JobQueue for FlakyQueue {
    async fn enqueue(&self, job: NewJob) -> Result<bool, QueueError> {
        self.enqueue_calls.fetch_add(1, Ordering::SeqCst);
        self.gate()?;
        self.inner.enqueue(job).await
    }

    async fn reserve(
        &self,
        queue: &str,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Option<Job>, QueueError> {
        self.gate()?;
        self.inner.reserve(queue, visibility, wait).await
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        self.gate()?;
        self.inner.ack(job).await
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<RetryOutcome, QueueError> {
        self.gate()?;
        self.inner.fail(job, error).await
    }

    async fn extend(&self, job: &Job, visibility: Duration) -> Result<(), QueueError> {
        self.gate()?;
        self.inner.extend(job, visibility).await
    }

    async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.inner.stats(queue).await
    }

    async fn dead_letters(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        self.inner.dead_letters(queue, limit).await
    }

    async fn requeue_dead(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        self.inner.requeue_dead(queue, id).await
    }

    async fn check(&self) -> Result<(), QueueError> {
        self.gate()?;
        self.inner.check().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_outlives_a_long_queue_outage_and_its_job_is_enqueued_after_it() {
    let broker = EmbeddedBroker::open(BrokerConfig::default())
        .await
        .expect("in-memory broker");
    let bus: Arc<dyn Bus> = Arc::new(broker.clone());
    let queue = Arc::new(FlakyQueue {
        inner: EmbeddedQueue::open(&broker, RetryPolicy::default())
            .await
            .expect("queue"),
        down: AtomicBool::new(true),
        enqueue_calls: AtomicUsize::new(0),
    });
    let shutdown = Shutdown::new();
    let consumer = tokio::spawn(orderly_consumer::run(
        bus.clone(),
        queue.clone(),
        shutdown.clone(),
    ));
    bus.ensure_stream(events::stream()).await.expect("stream");
    let event = NewOrder {
        order_id: uuid::Uuid::new_v4(),
        user_id: 1,
        timestamp: time::OffsetDateTime::now_utc(),
    };
    bus.publish(
        Message::new(events::NEW_ORDER, serde_json::to_vec(&event).unwrap())
            .with_header(header::EVENT_ID, uuid::Uuid::new_v4().to_string()),
    )
    .await
    .expect("publish");
    // Longer than 20 deliveries nacked a second apart.
    let outage = Duration::from_secs(25);
    tokio::time::sleep(outage).await;
    assert!(
        queue.enqueue_calls.load(Ordering::SeqCst) > 3,
        "the consumer stopped trying to enqueue during the outage"
    );
    queue.down.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = queue.stats(PROCESS_ORDER).await.expect("stats");
        if s.waiting == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no job after the queue came back (the event was dead-lettered?): {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    consumer.await.unwrap().expect("consumer ends cleanly");
}
