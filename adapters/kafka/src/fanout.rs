//! Fan-out subscriptions: every partition assigned at its end offset, no group
//! membership, nothing committed.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use orderly_bus::{BusError, Delivery, Headers as BusHeaders, Message, Subscription};

use crate::context::LogContext;
use crate::{Inner, unavailable};

/// Buffered deliveries per fan-out subscriber; librdkafka buffers beyond it.
const PENDING: usize = 1024;

pub(crate) fn to_message(m: &BorrowedMessage<'_>, inner: &Inner) -> Message {
    let mut headers = BusHeaders::new();
    if let Some(h) = m.headers() {
        for header in h.iter() {
            let value = header
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            headers.insert(header.key.to_string(), value);
        }
    }
    Message {
        subject: inner.subject_of(m.topic()).to_string(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        payload: bytes::Bytes::copy_from_slice(m.payload().unwrap_or_default()),
    }
}

/// Resolves once the bus is closing.
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The next record as owned data: (partition, offset, message).
pub(crate) async fn recv_owned<C: rdkafka::consumer::ConsumerContext + 'static>(
    consumer: &StreamConsumer<C>,
    inner: &Inner,
) -> Result<(i32, i64, Message), rdkafka::error::KafkaError> {
    let m = consumer.recv().await?;
    Ok((m.partition(), m.offset(), to_message(&m, inner)))
}

pub(crate) async fn subscribe(inner: Arc<Inner>, subject: &str) -> Result<Subscription, BusError> {
    let topic = &inner.topic(subject)?;
    let partitions = inner.ensure_topic(subject).await?;
    let group_id = format!(
        "{}orderly-fanout-{}",
        inner.config.topic_prefix,
        uuid::Uuid::new_v4()
    );
    let consumer: StreamConsumer<LogContext> = inner
        .config
        .consumer_config(&group_id)
        .create_with_context(LogContext::new("fan-out consumer"))
        .map_err(|e| BusError::Other(format!("cannot create a Kafka consumer: {e}")))?;
    let consumer = Arc::new(consumer);
    // The end offsets read now are exactly "after subscribe returned": a publish
    // that completed earlier is below them, one that starts later is above.
    let (c, name, timeout) = (
        consumer.clone(),
        topic.to_string(),
        inner.config.request_timeout,
    );
    let assignment = tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = c.fetch_watermarks(&name, p, timeout)?;
            tpl.add_partition_offset(&name, p, Offset::Offset(high))?;
        }
        c.assign(&tpl)?;
        Ok::<_, rdkafka::error::KafkaError>(())
    })
    .await
    .map_err(|e| BusError::Other(format!("assign task failed: {e}")))?;
    assignment.map_err(|e| unavailable(&format!("subscribe to {topic}"), e))?;

    let (tx, rx) = mpsc::channel(PENDING);
    let mut stop = inner.stop.subscribe();
    let name = topic.to_string();
    let me = inner.clone();
    let task = tokio::spawn(async move {
        let inner = me;
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => break,
                _ = tx.closed() => break,
                received = recv_owned(&consumer, &inner) => match received {
                    Ok((_, _, message)) => {
                        tokio::select! {
                            sent = tx.send(Delivery::unacked(message)) => if sent.is_err() { break },
                            _ = stopped(&mut stop) => break,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(topic = %name, error = %e, "Kafka fan-out consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        // Closing a consumer blocks on the network.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    });
    inner.track(task);
    Ok(Subscription::new(rx, None))
}
