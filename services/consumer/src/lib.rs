//! The consumer: turns each `new_order` event into one `process_order` job.

use std::sync::Arc;
use std::time::Duration;

use orderly_bus::schema::events::{self, NewOrder};
use orderly_bus::schema::jobs::ProcessOrder;
use orderly_bus::{Bus, BusError, Delivery, GroupOptions, JobQueue, NewJob, header};
use orderly_core::Shutdown;

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
    match delivery_headers.get(header::EVENT_ID) {
        Some(id) => format!("{PROCESS_ORDER}:{id}"),
        None => format!("{PROCESS_ORDER}:order:{}", event.order_id),
    }
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

/// Consume until shutdown. Acks only after the job is safely enqueued.
pub async fn run(
    bus: Arc<dyn Bus>,
    queue: Arc<dyn JobQueue>,
    shutdown: Shutdown,
) -> Result<(), BusError> {
    bus.ensure_stream(events::stream()).await?;
    let options = GroupOptions {
        ack_wait: Duration::from_secs(30),
        max_deliveries: 20,
        max_in_flight: 64,
    };
    let mut subscription = bus
        .subscribe_group(events::NEW_ORDER, GROUP, options)
        .await?;
    tracing::info!(
        subject = events::NEW_ORDER,
        group = GROUP,
        "consumer started"
    );
    loop {
        let delivery = tokio::select! {
            d = subscription.next() => d,
            _ = shutdown.wait() => break,
        };
        let Some(delivery) = delivery else {
            tracing::warn!("new_order subscription ended");
            break;
        };
        match handle(queue.as_ref(), &delivery).await {
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
            Err(e) => {
                tracing::warn!(error = %e, "cannot enqueue process_order; event will be redelivered");
                delivery.nack(Duration::from_secs(1));
            }
        }
    }
    tracing::info!("consumer stopped");
    Ok(())
}
