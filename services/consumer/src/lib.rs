//! The consumer: turns each `new_order` event into one `process_order` job.

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::schema::events::{self, NewOrder};
use orderly_bus::schema::jobs::ProcessOrder;
use orderly_bus::{
    Backoff, Bus, BusError, Delivery, GroupOptions, JobQueue, NewJob, QueueError, header,
};
use orderly_core::Shutdown;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use orderly_bus::{Pause, PauseNames};

use orderly_bus::schema::jobs::PROCESS_ORDER;

/// The durable group of all consumer processes (they share the work).
pub const GROUP: &str = "order-consumer";

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Enqueued(String),
    /// The job already existed: a redelivered or republished event.
    Duplicate(String),
    /// Not a `new_order` we can read; acked so it does not block the group.
    Malformed(String),
}

/// The job id for an event: its `event-id`, so duplicates of one event make one
/// job. Old producers send no headers; one `new_order` per order makes the order
/// id a stable id for them.
pub fn job_id(delivery_headers: &orderly_bus::Headers, event: &NewOrder) -> String {
    orderly_bus::schema::jobs::process_order_job_id(
        event.order_id,
        delivery_headers.get(header::EVENT_ID).map(String::as_str),
    )
}

pub async fn handle(
    queue: &dyn JobQueue,
    delivery: &Delivery,
) -> Result<Handled, orderly_bus::QueueError> {
    let message = &delivery.message;
    let event: NewOrder = match serde_json::from_slice(&message.payload) {
        Ok(e) => e,
        Err(e) => return Ok(Handled::Malformed(e.to_string())),
    };
    let id = job_id(&message.headers, &event);
    let job = ProcessOrder {
        order_id: event.order_id,
        traceparent: message.header(header::TRACEPARENT).map(str::to_string),
    };
    let payload = serde_json::to_vec(&job).unwrap_or_default();
    let created = queue
        .enqueue(NewJob {
            queue: PROCESS_ORDER.into(),
            id: id.clone(),
            payload: payload.into(),
        })
        .await?;
    Ok(if created {
        Handled::Enqueued(id)
    } else {
        Handled::Duplicate(id)
    })
}

/// Deliveries handled at once (each one enqueue round trip).
const IN_FLIGHT: usize = 64;
/// How long the group waits for an ack before redelivering.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Retries of an enqueue while the queue is down: doubling, jittered, capped.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Consume until shutdown. Acks only after the job is safely enqueued.
///
/// While the queue is unavailable the delivery is held, not nacked (each
/// nack spends one of its deliveries, and the last one dead-letters the
/// event): the enqueue is retried with jittered backoff, the delivery is kept
/// alive with [`Delivery::in_progress`], and no new delivery is taken until
/// the queue answers again (`consumer_paused` = 1 meanwhile).
pub async fn run(
    bus: Arc<dyn Bus>,
    queue: Arc<dyn JobQueue>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    bus.ensure_stream(events::stream()).await?;
    let options = GroupOptions {
        ack_wait: ACK_WAIT,
        max_deliveries: 20,
        max_in_flight: IN_FLIGHT,
    };
    let mut subscription = bus
        .subscribe_group(events::NEW_ORDER, GROUP, options)
        .await?;
    tracing::info!(
        subject = events::NEW_ORDER,
        group = GROUP,
        "consumer started"
    );
    let pause = Arc::new(Pause::new(PAUSE));
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        // No new work while the queue is down: what is held waits for it.
        tokio::select! {
            _ = pause.until_resumed() => {}
            _ = shutdown.wait() => break,
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait() => break,
        };
        let delivery = tokio::select! {
            d = subscription.next() => d,
            _ = shutdown.wait() => break,
        };
        let Some(delivery) = delivery else {
            tracing::warn!("new_order subscription ended");
            break;
        };
        let (queue, pause, stop) = (queue.clone(), pause.clone(), shutdown.clone());
        tokio::spawn(async move {
            settle(queue.as_ref(), delivery, &pause, &stop).await;
            drop(permit);
        });
    }
    // Deliveries in hand finish their enqueue (or, during an outage, are
    // left to the group's redelivery once the shutdown stops their retries).
    let _ = slots.acquire_many(IN_FLIGHT as u32).await;
    tracing::info!("consumer stopped");
    Ok(())
}

/// Enqueue the delivery's job and ack it; through an outage of the queue,
/// hold it until the enqueue works.
async fn settle(queue: &dyn JobQueue, delivery: Delivery, pause: &Pause, shutdown: &Shutdown) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    let mut kept_alive = Instant::now();
    loop {
        match handle(queue, &delivery).await {
            Ok(Handled::Enqueued(id)) => {
                metrics::counter!("consumer_jobs_enqueued_total").increment(1);
                tracing::info!(job_id = %id, "process_order job enqueued");
                delivery.ack();
            }
            Ok(Handled::Duplicate(id)) => {
                tracing::info!(job_id = %id, "duplicate new_order event; job already exists");
                delivery.ack();
            }
            Ok(Handled::Malformed(reason)) => {
                metrics::counter!("consumer_malformed_events_total").increment(1);
                tracing::error!(%reason, "dropping a malformed new_order event");
                delivery.ack();
            }
            Err(e @ (QueueError::Unavailable(_) | QueueError::Storage(_))) => {
                pause.pause(&e.to_string());
                let wait = backoff.next_delay();
                // The ack wait restarts well before it could run out.
                if kept_alive.elapsed() + wait >= ACK_WAIT / 3 {
                    delivery.in_progress();
                    kept_alive = Instant::now();
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => continue,
                    // Left to the group: redelivered after the ack wait.
                    _ = shutdown.wait() => return,
                }
            }
            // Stopping: left to the group, redelivered after the ack wait.
            Err(QueueError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot enqueue process_order; event will be redelivered");
                delivery.nack(Duration::from_secs(1));
            }
        }
        pause.resume();
        return;
    }
}

/// How this role's outage pause shows in metrics and logs.
const PAUSE: PauseNames = PauseNames {
    gauge: "consumer_paused",
    counter: "consumer_pauses_total",
    paused: "consumer paused: the job queue is unavailable; events are held (not nacked) until it answers",
    resumed: "consumer resumed: the job queue answers again",
};
