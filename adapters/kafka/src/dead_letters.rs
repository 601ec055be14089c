//! Dead letters on Kafka: the `<topic>.dlq` topics.
//!
//! A group that gives up on a record copies it to `<topic>.dlq` with headers
//! saying where it came from, which group gave up, why and when. Kafka cannot
//! delete one record, so replaying or purging one appends a marker record
//! ([`SETTLED`] = `<partition>.<offset>` of the copy) to the same topic, and a
//! listing reads each dead-letter topic of the stream from its start and leaves
//! out the copies a marker settled.
//!
//! A dead letter's id is `<dead-letter subject>.<partition>.<offset>` of its copy.
//! Replay publishes the message again to its original subject, so every
//! group on that topic sees it again (Kafka groups share the topic).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use orderly_bus::{BusError, DeadLetter, Message, StreamConfig, subject};

use crate::context::LogContext;
use crate::fanout::to_message;
use crate::{DEAD_LETTER_SUFFIX, Inner, unavailable};

/// The original subject of a dead-letter copy.
const ORIGINAL_TOPIC: &str = "orderly-original-topic";
const ORIGINAL_PARTITION: &str = "orderly-original-partition";
const ORIGINAL_OFFSET: &str = "orderly-original-offset";
const DELIVERIES: &str = "orderly-deliveries";
const REASON: &str = "orderly-dead-reason";
/// The group that gave up (without the topic prefix).
const GROUP: &str = "orderly-dead-group";
/// Wall-clock milliseconds since the Unix epoch when it was copied.
const DEAD_AT_MS: &str = "orderly-dead-at-ms";
/// On a marker record: the `<partition>.<offset>` of the copy it settles.
const SETTLED: &str = "orderly-dead-settled";

/// The headers a copy carries besides the message's own.
const COPY_HEADERS: [&str; 7] = [
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    DELIVERIES,
    REASON,
    GROUP,
    DEAD_AT_MS,
];

/// Where a record that ran out of deliveries came from, and why it is dead.
pub(crate) struct DeadLetterInfo<'a> {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) deliveries: u32,
    pub(crate) reason: &'a str,
    /// The Kafka group id (with the topic prefix).
    pub(crate) group: &'a str,
}

/// The copy of `message` for its dead-letter topic.
pub(crate) fn copy_of(inner: &Inner, message: &Message, info: &DeadLetterInfo<'_>) -> Message {
    let mut copy = message.clone();
    copy.subject = format!("{}{DEAD_LETTER_SUFFIX}", message.subject);
    let group = info
        .group
        .strip_prefix(inner.config.topic_prefix.as_str())
        .unwrap_or(info.group);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for (name, value) in [
        (ORIGINAL_TOPIC, message.subject.clone()),
        (ORIGINAL_PARTITION, info.partition.to_string()),
        (ORIGINAL_OFFSET, info.offset.to_string()),
        (DELIVERIES, info.deliveries.to_string()),
        (REASON, info.reason.to_string()),
        (GROUP, group.to_string()),
        (DEAD_AT_MS, now_ms.to_string()),
    ] {
        copy.headers.insert(name.into(), value);
    }
    copy
}

/// `(dead-letter subject, partition, offset)` of an id.
fn parse_id(id: &str) -> Option<(&str, i32, i64)> {
    let mut parts = id.rsplitn(3, '.');
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    let topic = parts.next()?;
    Some((topic, partition, offset))
}

/// Whether dead-letter subject `dlq` belongs to a subject of `stream`.
fn of_stream(stream: &StreamConfig, dlq: &str) -> bool {
    dlq.strip_suffix(DEAD_LETTER_SUFFIX)
        .is_some_and(|original| {
            stream
                .subjects
                .iter()
                .any(|s| subject::matches(s, original))
        })
}

/// The dead-letter topics of `stream` with their partitions.
fn dead_letter_topics(
    inner: &Inner,
    stream: &StreamConfig,
) -> Result<Vec<(String, Vec<i32>)>, KafkaError> {
    let metadata = inner
        .admin
        .inner()
        .fetch_metadata(None, inner.config.request_timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| {
            t.name().starts_with(inner.config.topic_prefix.as_str())
                && of_stream(stream, inner.subject_of(t.name()))
        })
        .filter(|t| match t.error() {
            None => true,
            Some(code) => {
                // Not created yet (a copy failed) or not readable: nothing to list there.
                tracing::warn!(topic = t.name(), error = ?code,
                    "dead-letter topic reports an error; its dead letters are not listed");
                false
            }
        })
        .map(|t| {
            (
                t.name().to_string(),
                t.partitions().iter().map(|p| p.id()).collect(),
            )
        })
        .collect())
}

/// Every record of `topic`, from each partition's start to its current end.
fn read_topic(
    inner: &Inner,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64, Message)>, KafkaError> {
    let timeout = inner.config.request_timeout;
    let group_id = format!(
        "{}orderly-dead-letters-{}",
        inner.config.topic_prefix,
        uuid::Uuid::new_v4()
    );
    let consumer: BaseConsumer<LogContext> = inner
        .config
        .consumer_config(&group_id)
        .create_with_context(LogContext::new("dead-letter reader"))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for &p in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    // Reading what is already there takes a few fetches; a stall this long
    // means the cluster does not serve the topic.
    let deadline = Instant::now() + timeout * 4;
    while !ends.is_empty() {
        if Instant::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                rdkafka::types::RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        let Some(next) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = next?;
        let (p, offset) = (
            rdkafka::Message::partition(&m),
            rdkafka::Message::offset(&m),
        );
        out.push((p, offset, to_message(&m, inner)));
        if ends.get(&p).is_some_and(|&end| offset + 1 >= end) {
            ends.remove(&p);
        }
    }
    Ok(out)
}

/// A copy as the port shows it.
fn to_dead_letter(dlq: &str, partition: i32, offset: i64, copy: Message) -> DeadLetter {
    let header = |name: &str| copy.headers.get(name).cloned();
    let original = header(ORIGINAL_TOPIC)
        .or_else(|| dlq.strip_suffix(DEAD_LETTER_SUFFIX).map(str::to_string))
        .unwrap_or_default();
    let reason =
        header(REASON).unwrap_or_else(|| "not recorded (copied by an older version)".into());
    let deliveries = header(DELIVERIES).and_then(|d| d.parse().ok()).unwrap_or(0);
    let dead_at = header(DEAD_AT_MS)
        .and_then(|ms| ms.parse().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    let group = header(GROUP).unwrap_or_default();
    let mut message = copy;
    message.subject = original;
    for h in COPY_HEADERS {
        message.headers.remove(h);
    }
    DeadLetter {
        id: format!("{dlq}.{partition}.{offset}"),
        group,
        message,
        reason,
        deliveries,
        dead_at,
    }
}

/// Every dead letter of `stream` not yet replayed or purged, oldest first.
fn read_all(inner: &Inner, stream: &StreamConfig) -> Result<Vec<DeadLetter>, BusError> {
    let topics = dead_letter_topics(inner, stream).map_err(|e| unavailable("metadata", e))?;
    let mut letters = Vec::new();
    for (topic, partitions) in topics {
        let records = read_topic(inner, &topic, &partitions)
            .map_err(|e| unavailable(&format!("read {topic}"), e))?;
        let settled: HashSet<String> = records
            .iter()
            .filter_map(|(_, _, m)| m.headers.get(SETTLED).cloned())
            .collect();
        let dlq = inner.subject_of(&topic).to_string();
        for (partition, offset, m) in records {
            if m.headers.contains_key(SETTLED) || settled.contains(&format!("{partition}.{offset}"))
            {
                continue;
            }
            letters.push(to_dead_letter(&dlq, partition, offset, m));
        }
    }
    letters.sort_by(|a, b| a.dead_at.cmp(&b.dead_at).then_with(|| a.id.cmp(&b.id)));
    Ok(letters)
}

async fn read_all_blocking(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
) -> Result<Vec<DeadLetter>, BusError> {
    let (me, stream) = (inner.clone(), stream.clone());
    tokio::task::spawn_blocking(move || read_all(&me, &stream))
        .await
        .map_err(|e| BusError::Other(format!("dead-letter read task failed: {e}")))?
}

pub(crate) async fn list(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    limit: usize,
) -> Result<Vec<DeadLetter>, BusError> {
    let mut letters = read_all_blocking(inner, stream).await?;
    letters.truncate(limit);
    Ok(letters)
}

/// Appends the marker that settles copy `id`; `false` if it is not a live dead letter.
async fn settle(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    id: &str,
    replay: bool,
) -> Result<bool, BusError> {
    let Some((dlq, partition, offset)) = parse_id(id) else {
        return Ok(false);
    };
    if !of_stream(stream, dlq) {
        return Ok(false);
    }
    let letters = read_all_blocking(inner, stream).await?;
    let Some(letter) = letters.into_iter().find(|l| l.id == id) else {
        return Ok(false);
    };
    if replay {
        inner.publish(letter.message.clone()).await?;
    }
    let mark = format!("{partition}.{offset}");
    let marker = Message::new(dlq, bytes::Bytes::new())
        .with_key(mark.clone())
        .with_header(SETTLED, mark);
    inner.publish(marker).await?;
    tracing::info!(
        dead_letter = id,
        subject = %letter.message.subject,
        "dead letter {}",
        if replay { "replayed" } else { "purged" }
    );
    Ok(true)
}

pub(crate) async fn replay(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    id: &str,
) -> Result<bool, BusError> {
    settle(inner, stream, id, true).await
}

pub(crate) async fn purge(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    id: &str,
) -> Result<bool, BusError> {
    settle(inner, stream, id, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_topic_partition_and_offset() {
        assert_eq!(
            parse_id("orders.eu.dlq.2.17"),
            Some(("orders.eu.dlq", 2, 17))
        );
        assert_eq!(parse_id("nope"), None);
        assert_eq!(parse_id("a.dlq.x.1"), None);
    }

    #[test]
    fn a_dead_letter_topic_belongs_to_the_stream_of_its_subject() {
        let stream = StreamConfig::new("s", &["orders.*", "new_order"]);
        assert!(of_stream(&stream, "new_order.dlq"));
        assert!(of_stream(&stream, "orders.eu.dlq"));
        assert!(!of_stream(&stream, "new_order"));
        assert!(!of_stream(&stream, "other.dlq"));
    }
}
