//! The JetStream API subset the NATS adapter (async-nats) uses, served from the
//! embedded broker's durable streams and groups:
//!
//! - [`stream_api`]: `$JS.API.INFO`, `STREAM.CREATE|UPDATE|INFO.<name>`, `STREAM.NAMES`.
//! - [`consumer_api`]: durable pull consumers, `CONSUMER.CREATE.<stream>.<name>[.<filter>]`,
//!   `CONSUMER.DURABLE.CREATE.<stream>.<name>`, `CONSUMER.INFO.<stream>.<name>`.
//! - [`pull`]: `CONSUMER.MSG.NEXT.<stream>.<name>` requests and the task that
//!   answers them (messages, `404` no messages, `408` request expired).
//! - [`ack`]: `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`
//!   with `+ACK`, `-NAK [{"delay":ns}]`, `+TERM`, `+WPI`.
//!
//! A JetStream consumer is a group of the stream (group name = consumer
//! name), taken from by the pull member; its ack wait and limits live here,
//! in memory. After a broker restart a consumer the client did not create
//! again is rebuilt from the stream's group with default limits.
//!
//! Every answer is a core publish to the request's reply subject, so it
//! reaches the client through its inbox subscription like on nats-server.

mod ack;
mod consumer_api;
mod pull;
mod stream_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Value, json};

use super::STATUS_HEADER;
use crate::Message;
use crate::embedded::EmbeddedBroker;

pub(crate) use consumer_api::Consumer;

/// The API prefix clients send requests under.
pub(crate) const API_PREFIX: &str = "$JS.API.";
/// The prefix of the ack subjects we hand out.
pub(crate) const ACK_PREFIX: &str = "$JS.ACK.";

/// The JetStream state of one listener: its consumers.
pub(crate) struct JetStream {
    pub(crate) broker: EmbeddedBroker,
    consumers: Mutex<HashMap<(String, String), Arc<Consumer>>>,
}

impl std::fmt::Debug for JetStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStream").finish_non_exhaustive()
    }
}

impl JetStream {
    pub(crate) fn new(broker: EmbeddedBroker) -> Arc<Self> {
        Arc::new(Self {
            broker,
            consumers: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `subject` is ours (an API request or an ack) rather than a
    /// subject to publish on.
    pub(crate) fn handles(subject: &str) -> bool {
        subject.starts_with(API_PREFIX) || subject.starts_with(ACK_PREFIX)
    }

    /// Serves a publish to a `$JS.` subject.
    pub(crate) async fn handle(
        self: &Arc<Self>,
        subject: &str,
        reply: Option<&str>,
        payload: &[u8],
    ) {
        if let Some(rest) = subject.strip_prefix(ACK_PREFIX) {
            ack::handle(self, rest, reply, payload).await;
            return;
        }
        let Some(api) = subject.strip_prefix(API_PREFIX) else {
            return;
        };
        // Pull requests answer with messages (or statuses) rather than JSON.
        if let Some(rest) = api.strip_prefix("CONSUMER.MSG.NEXT.") {
            pull::request(self, rest, reply, payload).await;
            return;
        }
        let Some(reply) = reply else {
            // nats-server ignores API requests nobody can read the answer of.
            return;
        };
        let answer = if api == "INFO" {
            stream_api::account_info(self)
        } else if let Some(rest) = api.strip_prefix("STREAM.") {
            stream_api::handle(self, rest, payload).await
        } else if let Some(rest) = api.strip_prefix("CONSUMER.") {
            consumer_api::handle(self, rest, payload)
        } else {
            api_error(400, 10003, "not supported by the orderly broker")
        };
        self.respond_json(reply, &answer).await;
    }

    pub(crate) async fn respond_json(&self, reply: &str, body: &Value) {
        let m = Message::new(reply, Bytes::from(body.to_string()));
        self.send(m).await;
    }

    /// A status message (`NATS/1.0 <code>`) with extra headers.
    pub(crate) async fn respond_status(&self, reply: &str, code: u16, headers: &[(&str, String)]) {
        let mut m = Message::new(reply, Bytes::new()).with_header(STATUS_HEADER, code.to_string());
        for (n, v) in headers {
            m.headers.insert((*n).to_string(), v.clone());
        }
        self.send(m).await;
    }

    pub(crate) async fn send(&self, m: Message) {
        if let Err(e) = self.broker.publish_counted(m).await {
            tracing::debug!(error = %e, "JetStream answer not delivered");
        }
    }

    pub(crate) fn consumer(&self, stream: &str, name: &str) -> Option<Arc<Consumer>> {
        self.lock_consumers()
            .get(&(stream.to_string(), name.to_string()))
            .cloned()
    }

    pub(crate) fn lock_consumers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Consumer>>> {
        // The map holds no invariant a panicking holder could break.
        self.consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stops every consumer's pull task (the listener is shutting down).
    pub(crate) fn close(&self) {
        for c in self.lock_consumers().drain().map(|(_, c)| c) {
            c.stop();
        }
    }
}

/// `{"error":{"code":…,"err_code":…,"description":…}}`, as async-nats reads it.
pub(crate) fn api_error(code: u16, err_code: u32, description: &str) -> Value {
    json!({
        "error": {"code": code, "err_code": err_code, "description": description}
    })
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// RFC 3339 (UTC) for Unix nanoseconds; the API's timestamps.
pub(crate) fn rfc3339(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A duration field of a request: nanoseconds.
pub(crate) fn nanos(v: &Value) -> Option<std::time::Duration> {
    v.as_u64().map(std::time::Duration::from_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.5Z
        assert_eq!(
            rfc3339(1_709_210_096_500_000_000),
            "2024-02-29T12:34:56.500000000Z"
        );
    }
}
