//! Durable pull consumers: create (or update), info, delete.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use super::pull::{self, Waiting};
use super::{JetStream, api_error, nanos, now_ns, rfc3339};
use crate::GroupOptions;
use crate::embedded::stream::{PULL_MEMBER, StreamShared};
use crate::subject;

/// nats-server's default `max_ack_pending`.
const DEFAULT_MAX_ACK_PENDING: usize = 1000;
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// The per-consumer settings the stream's group does not keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) ack_wait: Duration,
    /// `u32::MAX`: unlimited (`-1` on the wire).
    pub(crate) max_deliver: u32,
    pub(crate) max_ack_pending: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: u32::MAX,
            max_ack_pending: DEFAULT_MAX_ACK_PENDING,
        }
    }
}

/// One durable pull consumer: a group of the stream plus its pending pull requests.
pub(crate) struct Consumer {
    pub(crate) stream_name: String,
    pub(crate) name: String,
    pub(crate) stream: Arc<StreamShared>,
    pub(crate) gi: usize,
    pub(crate) filter: String,
    pub(crate) limits: Mutex<Limits>,
    pub(crate) waiting: Mutex<VecDeque<Waiting>>,
    /// A new pull request arrived.
    pub(crate) wake: Notify,
    /// The consumer sequence: deliveries handed out so far.
    pub(crate) delivered: AtomicU64,
    created: String,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Consumer {
    pub(crate) fn limits(&self) -> Limits {
        *self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn lock_waiting(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn stop(&self) {
        if let Some(t) = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            t.abort();
        }
    }

    fn config_json(&self) -> Value {
        let l = self.limits();
        json!({
            "durable_name": self.name,
            "name": self.name,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": u64::try_from(l.ack_wait.as_nanos()).unwrap_or(u64::MAX),
            "max_deliver": if l.max_deliver == u32::MAX { -1 } else { i64::from(l.max_deliver) },
            "filter_subject": self.filter,
            "replay_policy": "instant",
            "max_waiting": pull::MAX_WAITING,
            "max_ack_pending": l.max_ack_pending,
            "num_replicas": 0
        })
    }

    pub(crate) fn info(&self, kind: &str) -> Value {
        let (counts, in_flight) = {
            let s = self.stream.lock();
            (s.counts(self.gi), s.in_flight_of(self.gi, PULL_MEMBER))
        };
        let delivered = self.delivered.load(std::sync::atomic::Ordering::Acquire);
        json!({
            "type": kind,
            "stream_name": self.stream_name,
            "name": self.name,
            "created": self.created,
            "config": self.config_json(),
            "delivered": {"consumer_seq": delivered, "stream_seq": 0},
            "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
            "num_ack_pending": in_flight,
            "num_redelivered": 0,
            "num_waiting": self.lock_waiting().len(),
            "num_pending": counts.pending + counts.delayed
        })
    }
}

/// `CONSUMER.<rest>`.
pub(crate) fn handle(js: &Arc<JetStream>, rest: &str, payload: &[u8]) -> Value {
    if let Some(r) = rest
        .strip_prefix("DURABLE.CREATE.")
        .or_else(|| rest.strip_prefix("CREATE."))
    {
        let mut parts = r.splitn(3, '.');
        let (Some(stream), Some(name)) = (parts.next(), parts.next()) else {
            return api_error(400, 10003, "only durable pull consumers are supported");
        };
        return create(js, stream, name, parts.next(), payload);
    }
    if let Some(r) = rest.strip_prefix("INFO.") {
        let Some((stream, name)) = r.split_once('.') else {
            return api_error(400, 10003, "CONSUMER.INFO.<stream>.<consumer>");
        };
        return match find(js, stream, name) {
            Some(c) => c.info("io.nats.jetstream.api.v1.consumer_info_response"),
            None => api_error(404, 10014, "consumer not found"),
        };
    }
    if let Some(r) = rest.strip_prefix("DELETE.") {
        let Some((stream, name)) = r.split_once('.') else {
            return api_error(400, 10003, "CONSUMER.DELETE.<stream>.<consumer>");
        };
        let removed = js
            .lock_consumers()
            .remove(&(stream.to_string(), name.to_string()));
        return match removed {
            Some(c) => {
                // The group (and what it acked) stays in the stream's log.
                c.stop();
                json!({"type": "io.nats.jetstream.api.v1.consumer_delete_response", "success": true})
            }
            None => api_error(404, 10014, "consumer not found"),
        };
    }
    api_error(400, 10003, "not supported by the orderly broker")
}

/// The consumer, or — after a broker restart — one rebuilt from the stream's
/// group of that name, with default limits until the client creates it again.
pub(crate) fn find(js: &Arc<JetStream>, stream: &str, name: &str) -> Option<Arc<Consumer>> {
    if let Some(c) = js.consumer(stream, name) {
        return Some(c);
    }
    let shared = js.broker.stream_named(stream)?;
    let (gi, filter) = shared.lock().group_named(name)?;
    Some(register(
        js,
        stream,
        name,
        shared,
        gi,
        filter,
        Limits::default(),
    ))
}

fn register(
    js: &Arc<JetStream>,
    stream: &str,
    name: &str,
    shared: Arc<StreamShared>,
    gi: usize,
    filter: String,
    limits: Limits,
) -> Arc<Consumer> {
    let mut map = js.lock_consumers();
    let key = (stream.to_string(), name.to_string());
    if let Some(c) = map.get(&key) {
        return c.clone();
    }
    let c = Arc::new(Consumer {
        stream_name: stream.to_string(),
        name: name.to_string(),
        stream: shared,
        gi,
        filter,
        limits: Mutex::new(limits),
        waiting: Mutex::new(VecDeque::new()),
        wake: Notify::new(),
        delivered: AtomicU64::new(0),
        created: rfc3339(now_ns()),
        task: Mutex::new(None),
    });
    let task = tokio::spawn(pull::pump(c.clone(), js.clone()));
    *c.task
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task);
    map.insert(key, c.clone());
    c
}

fn create(
    js: &Arc<JetStream>,
    stream: &str,
    name: &str,
    subject_filter: Option<&str>,
    payload: &[u8],
) -> Value {
    let Ok(req) = serde_json::from_slice::<Value>(payload) else {
        return api_error(400, 10025, "invalid JSON");
    };
    let config = &req["config"];
    let durable = config["durable_name"]
        .as_str()
        .or_else(|| config["name"].as_str());
    if durable.is_some_and(|d| d != name) {
        return api_error(
            400,
            10017,
            "consumer name in subject does not match durable name in request",
        );
    }
    if config["deliver_subject"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return api_error(
            400,
            10003,
            "push consumers are not supported by the orderly broker",
        );
    }
    if config["ack_policy"]
        .as_str()
        .is_some_and(|p| p != "explicit")
    {
        return api_error(
            400,
            10003,
            "only ack_policy explicit is supported by the orderly broker",
        );
    }
    if config["deliver_policy"]
        .as_str()
        .is_some_and(|p| p != "all")
    {
        return api_error(
            400,
            10003,
            "only deliver_policy all is supported by the orderly broker",
        );
    }
    let Some(filter) = config["filter_subject"]
        .as_str()
        .filter(|f| !f.is_empty())
        .or(subject_filter)
    else {
        return api_error(400, 10003, "the orderly broker needs a filter_subject");
    };
    if subject::validate_filter(filter).is_err() {
        return api_error(400, 10093, "invalid filter subject");
    }
    let Some(shared) = js.broker.stream_named(stream) else {
        return api_error(404, 10059, "stream not found");
    };
    let defaults = Limits::default();
    let limits = Limits {
        ack_wait: nanos(&config["ack_wait"])
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults.ack_wait),
        max_deliver: config["max_deliver"]
            .as_i64()
            .filter(|n| *n > 0)
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)),
        max_ack_pending: config["max_ack_pending"]
            .as_i64()
            .filter(|n| *n > 0)
            .map_or(defaults.max_ack_pending, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
    };
    if let Some(existing) = js.consumer(stream, name)
        && existing.filter != filter
    {
        return api_error(400, 10012, "consumer filter subject cannot be changed");
    }
    let options = GroupOptions {
        ack_wait: limits.ack_wait,
        max_deliveries: limits.max_deliver,
        max_in_flight: limits.max_ack_pending,
    };
    let gi = {
        let mut s = shared.lock();
        if !s.covers(filter) {
            return api_error(
                400,
                10093,
                "consumer filter subject is not a valid subset of the interest subjects",
            );
        }
        match s.ensure_group(name, filter, &options) {
            Ok(gi) => gi,
            Err(e) => return api_error(500, 10012, &format!("consumer create: {e}")),
        }
    };
    let c = register(js, stream, name, shared, gi, filter.to_string(), limits);
    // Creating an existing durable updates its editable settings.
    *c.limits
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    c.wake.notify_one();
    c.info("io.nats.jetstream.api.v1.consumer_create_response")
}
