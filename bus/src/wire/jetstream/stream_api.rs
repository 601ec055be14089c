//! Streams: account info, create / update / info, and names by subject.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{JetStream, api_error, nanos, now_ns, rfc3339};
use crate::embedded::stream::StreamShared;
use crate::subject;
use crate::{Bus, BusError, StreamConfig};

const NOT_FOUND: (u16, u32, &str) = (404, 10059, "stream not found");

/// `$JS.API.INFO`: only answered when JetStream is up, which it is.
pub(crate) fn account_info(js: &JetStream) -> Value {
    let streams = js.broker.streams();
    let (mut storage, mut consumers) = (0u64, 0usize);
    for s in &streams {
        let s = s.lock();
        storage += s.store_size();
        consumers += s.group_count();
    }
    json!({
        "type": "io.nats.jetstream.api.v1.account_info_response",
        "memory": 0,
        "storage": storage,
        "streams": streams.len(),
        "consumers": consumers,
        "limits": {
            "max_memory": -1, "max_storage": -1, "max_streams": -1, "max_consumers": -1,
            "max_ack_pending": -1, "memory_max_stream_bytes": -1,
            "storage_max_stream_bytes": -1, "max_bytes_required": false
        },
        "api": {"total": 0, "errors": 0}
    })
}

/// `STREAM.<rest>`.
pub(crate) async fn handle(js: &JetStream, rest: &str, payload: &[u8]) -> Value {
    if let Some(name) = rest.strip_prefix("CREATE.") {
        return create_or_update(js, name, payload, false).await;
    }
    if let Some(name) = rest.strip_prefix("UPDATE.") {
        return create_or_update(js, name, payload, true).await;
    }
    if let Some(name) = rest.strip_prefix("INFO.") {
        return match js.broker.stream_named(name) {
            Some(s) => info(&s, "io.nats.jetstream.api.v1.stream_info_response"),
            None => api_error(NOT_FOUND.0, NOT_FOUND.1, NOT_FOUND.2),
        };
    }
    if rest == "NAMES" {
        return names(js, payload);
    }
    api_error(400, 10003, "not supported by the orderly broker")
}

async fn create_or_update(js: &JetStream, name: &str, payload: &[u8], update: bool) -> Value {
    let Ok(req) = serde_json::from_slice::<Value>(payload) else {
        return api_error(400, 10025, "invalid JSON");
    };
    if req["name"].as_str().is_some_and(|n| n != name) {
        return api_error(400, 10056, "stream name in subject does not match request");
    }
    let subjects: Vec<String> = req["subjects"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if subjects.is_empty() {
        // nats-server would default to the stream name; our streams need explicit subjects.
        return api_error(400, 10052, "stream needs at least one subject");
    }
    if update && js.broker.stream_named(name).is_none() {
        return api_error(NOT_FOUND.0, NOT_FOUND.1, NOT_FOUND.2);
    }
    let config = StreamConfig {
        name: name.to_string(),
        subjects,
        max_age: nanos(&req["max_age"]).unwrap_or(Duration::ZERO),
    };
    match js.broker.ensure_stream(config).await {
        Ok(()) => {}
        Err(BusError::InvalidSubject(s, why)) => {
            return api_error(400, 10052, &format!("invalid subject {s:?}: {why}"));
        }
        Err(e) => return api_error(500, 10049, &e.to_string()),
    }
    match js.broker.stream_named(name) {
        Some(s) if update => info(&s, "io.nats.jetstream.api.v1.stream_update_response"),
        Some(s) => info(&s, "io.nats.jetstream.api.v1.stream_create_response"),
        None => api_error(500, 10049, "stream vanished while being created"),
    }
}

/// The stream's config and state, in nats-server's shape.
fn info(stream: &Arc<StreamShared>, kind: &str) -> Value {
    let s = stream.lock();
    let config = s.config();
    let now = rfc3339(now_ns());
    let messages = s.message_count() as u64;
    let last = s.last_seq();
    json!({
        "type": kind,
        "config": {
            "name": config.name,
            "subjects": config.subjects,
            "retention": "limits",
            "max_consumers": -1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": u64::try_from(config.max_age.as_nanos()).unwrap_or(u64::MAX),
            "max_msgs_per_subject": -1,
            "max_msg_size": -1,
            "discard": "old",
            "storage": "file",
            "num_replicas": 1,
            "duplicate_window": 0,
            "allow_rollup_hdrs": false,
            "deny_delete": true,
            "deny_purge": true,
            "sealed": false,
            "allow_direct": false,
            "mirror_direct": false
        },
        // Not kept by the broker: the time of this answer stands in.
        "created": now,
        "state": {
            "messages": messages,
            "bytes": s.store_size(),
            "first_seq": if messages == 0 { last + 1 } else { last + 1 - messages.min(last) },
            "first_ts": now,
            "last_seq": last,
            "last_ts": now,
            "consumer_count": s.group_count()
        }
    })
}

/// `STREAM.NAMES` with an optional `subject`: the streams whose subjects
/// overlap it (how async-nats finds the stream of a subject).
fn names(js: &JetStream, payload: &[u8]) -> Value {
    let req: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let filter = req["subject"].as_str().filter(|s| !s.is_empty());
    if let Some(f) = filter
        && subject::validate_filter(f).is_err()
    {
        return api_error(400, 10031, "invalid subject filter");
    }
    let mut names: Vec<String> = js
        .broker
        .streams()
        .iter()
        .filter_map(|s| {
            let s = s.lock();
            let hit = filter.is_none_or(|f| {
                s.config()
                    .subjects
                    .iter()
                    .any(|mine| subject::overlap(f, mine))
            });
            hit.then(|| s.name().to_string())
        })
        .collect();
    names.sort();
    json!({
        "type": "io.nats.jetstream.api.v1.stream_names_response",
        "total": names.len(),
        "offset": 0,
        "limit": 1024,
        "streams": names
    })
}
