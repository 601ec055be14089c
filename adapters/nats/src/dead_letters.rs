//! Dead letters on NATS. JetStream keeps no dead-letter queue: when a
//! consumer gives up on a message it publishes an advisory
//! (`$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>` when the
//! last delivery's ack wait ran out, `…MSG_TERMINATED…` when the adapter sent
//! `+TERM` after a nack of the last delivery) naming the stream sequence. Each
//! stream gets a companion stream, `<stream>_dead_letters`, that keeps those
//! advisories; the message itself stays in its stream (limits retention).
//!
//! A dead letter's id is the advisory's sequence in the companion stream.
//! Replay publishes the message again to its subject (without its
//! `Nats-Msg-Id`, which JetStream would take for a duplicate), so every
//! consumer of that subject sees it again; purge deletes the advisory.

use std::sync::Arc;
use std::time::SystemTime;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self};
use serde::Deserialize;

use orderly_bus::{Bus, BusError, DeadLetter, Message, StreamConfig};

use crate::{Inner, NatsBus, from_parts};

/// The header JetStream deduplicates on.
const MSG_ID: &str = "Nats-Msg-Id";

/// The companion stream that keeps the dead-letter advisories of `stream`.
pub fn capture_stream(stream: &str) -> String {
    format!("{stream}_dead_letters")
}

fn advisory_subjects(stream: &str) -> Vec<String> {
    ["MAX_DELIVERIES", "MSG_TERMINATED"]
        .iter()
        .map(|kind| format!("$JS.EVENT.ADVISORY.CONSUMER.{kind}.{stream}.*"))
        .collect()
}

/// Creates the companion stream of `config`. Best effort: a server that
/// cannot keep advisories (the embedded broker's listener) still serves the
/// stream, and the failure is logged.
pub(crate) async fn ensure_capture(inner: &Inner, config: &StreamConfig) {
    let wanted = jetstream::stream::Config {
        name: capture_stream(&config.name),
        subjects: advisory_subjects(&config.name),
        max_age: config.max_age,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    };
    if let Err(e) = inner.js.get_or_create_stream(wanted).await {
        tracing::warn!(stream = %config.name, error = %e,
            "cannot create the stream that keeps dead-letter advisories; dead letters of this stream will not be listed");
    }
}

/// The fields of both advisories that matter here.
#[derive(Deserialize)]
struct Advisory {
    #[serde(rename = "type")]
    kind: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
    /// Sent by servers that keep a termination reason (2.11+).
    #[serde(default)]
    reason: Option<String>,
}

impl Advisory {
    fn reason(&self) -> String {
        match &self.reason {
            Some(r) if !r.is_empty() => format!("terminated: {r}"),
            _ if self.kind.ends_with(".max_deliver") => {
                "max deliveries reached (no ack within the ack wait)".into()
            }
            // The adapter terminates only a nack of the last allowed delivery.
            _ => "max deliveries reached".into(),
        }
    }

    /// The group of a consumer named by [`crate::group::consumer_name`].
    fn group(&self) -> String {
        match self.consumer.rsplit_once('_') {
            Some((group, hash)) if hash.len() == 16 => group.to_string(),
            _ => self.consumer.clone(),
        }
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {e}"))
}

/// The advisory at `seq` of the companion stream and the message it names.
async fn read_one(
    capture: &jetstream::stream::Stream,
    source: &jetstream::stream::Stream,
    seq: u64,
) -> Result<Option<DeadLetter>, BusError> {
    let raw = match capture.get_raw_message(seq).await {
        Ok(raw) => raw,
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(None),
        Err(e) => return Err(unavailable("dead-letter advisory", e)),
    };
    let Ok(advisory) = serde_json::from_slice::<Advisory>(&raw.payload) else {
        tracing::warn!(seq, "unreadable dead-letter advisory; skipped");
        return Ok(None);
    };
    let mut reason = advisory.reason();
    let message = match source.get_raw_message(advisory.stream_seq).await {
        Ok(m) => from_parts(m.subject.as_str(), Some(&m.headers), m.payload),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => {
            reason.push_str("; the message has expired from the stream");
            Message::new(String::new(), bytes::Bytes::new())
        }
        Err(e) => return Err(unavailable("dead-lettered message", e)),
    };
    Ok(Some(DeadLetter {
        id: seq.to_string(),
        group: advisory.group(),
        message,
        reason,
        deliveries: u32::try_from(advisory.deliveries).unwrap_or(u32::MAX),
        dead_at: Some(SystemTime::from(raw.time)),
    }))
}

/// The companion stream and the stream itself; `None` if either is missing.
async fn streams(
    inner: &Inner,
    stream: &StreamConfig,
) -> Result<Option<(jetstream::stream::Stream, jetstream::stream::Stream)>, BusError> {
    let Some(capture) = get_stream(inner, &capture_stream(&stream.name)).await? else {
        return Ok(None);
    };
    let Some(source) = get_stream(inner, &stream.name).await? else {
        return Ok(None);
    };
    Ok(Some((capture, source)))
}

async fn get_stream(
    inner: &Inner,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, BusError> {
    match inner.js.get_stream(name).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                Ok(None)
            }
            _ => Err(unavailable(&format!("stream {name}"), e)),
        },
    }
}

pub(crate) async fn list(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    limit: usize,
) -> Result<Vec<DeadLetter>, BusError> {
    let Some((capture, source)) = streams(inner, stream).await? else {
        return Ok(Vec::new());
    };
    let state = capture.cached_info().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        if out.len() >= limit {
            break;
        }
        if let Some(letter) = read_one(&capture, &source, seq).await? {
            out.push(letter);
        }
    }
    Ok(out)
}

pub(crate) async fn replay(
    bus: &NatsBus,
    stream: &StreamConfig,
    id: &str,
) -> Result<bool, BusError> {
    let Ok(seq) = id.parse::<u64>() else {
        return Ok(false);
    };
    let Some((capture, source)) = streams(&bus.inner, stream).await? else {
        return Ok(false);
    };
    let Some(letter) = read_one(&capture, &source, seq).await? else {
        return Ok(false);
    };
    if letter.message.subject.is_empty() {
        return Err(BusError::Other(format!(
            "dead letter {id} cannot be replayed: its message has expired from stream {} (purge it)",
            stream.name
        )));
    }
    let mut message = letter.message;
    message.headers.remove(MSG_ID);
    bus.publish(message).await?;
    delete(&capture, seq).await?;
    tracing::info!(stream = %stream.name, dead_letter = id, "dead letter replayed");
    Ok(true)
}

pub(crate) async fn purge(
    inner: &Arc<Inner>,
    stream: &StreamConfig,
    id: &str,
) -> Result<bool, BusError> {
    let Ok(seq) = id.parse::<u64>() else {
        return Ok(false);
    };
    let Some((capture, _)) = streams(inner, stream).await? else {
        return Ok(false);
    };
    match capture.get_raw_message(seq).await {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(false),
        Err(e) => return Err(unavailable("dead-letter advisory", e)),
    }
    let deleted = delete(&capture, seq).await?;
    if deleted {
        tracing::info!(stream = %stream.name, dead_letter = id, "dead letter purged");
    }
    Ok(deleted)
}

async fn delete(capture: &jetstream::stream::Stream, seq: u64) -> Result<bool, BusError> {
    capture
        .delete_message(seq)
        .await
        .map_err(|e| unavailable("delete dead-letter advisory", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisories_name_the_group_and_the_reason() {
        let a: Advisory = serde_json::from_str(
            r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x","timestamp":"2026-01-01T00:00:00Z",
                "stream":"S","consumer":"billing_00112233aabbccdd","stream_seq":7,"deliveries":3}"#,
        )
        .unwrap();
        assert_eq!(a.group(), "billing");
        assert_eq!(a.stream_seq, 7);
        assert!(a.reason().contains("ack wait"));
        let t: Advisory = serde_json::from_str(
            r#"{"type":"io.nats.jetstream.advisory.v1.terminated","stream":"S","consumer":"c",
                "consumer_seq":2,"stream_seq":9,"deliveries":1,"reason":"poison"}"#,
        )
        .unwrap();
        assert_eq!(t.reason(), "terminated: poison");
        assert_eq!(t.group(), "c");
    }
}
