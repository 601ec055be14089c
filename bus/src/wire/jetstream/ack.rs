//! Acks: a publish to the ack subject of a delivery,
//! `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`.
//! The body says what to do: `+ACK` (or empty), `-NAK` with an optional
//! `{"delay":ns}`, `+TERM` (no more deliveries), `+WPI` (still working: the
//! ack wait starts again).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;

use super::JetStream;
use super::consumer_api::find;
use super::pull::empty;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AckBody {
    Ack,
    Nak(Duration),
    Term,
    InProgress,
}

impl AckBody {
    pub(crate) fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?.trim();
        if text.is_empty() || text.starts_with("+ACK") || text.starts_with("+NXT") {
            return Some(Self::Ack);
        }
        if let Some(rest) = text.strip_prefix("-NAK") {
            let delay = serde_json::from_str::<Value>(rest.trim())
                .ok()
                .and_then(|v| v["delay"].as_u64())
                .map_or(Duration::ZERO, Duration::from_nanos);
            return Some(Self::Nak(delay));
        }
        if text.starts_with("+TERM") {
            return Some(Self::Term);
        }
        if text.starts_with("+WPI") {
            return Some(Self::InProgress);
        }
        None
    }
}

/// The fields of an ack subject after `$JS.ACK.` that we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AckSubject<'a> {
    pub(crate) stream: &'a str,
    pub(crate) consumer: &'a str,
    pub(crate) delivered: u32,
    pub(crate) stream_seq: u64,
}

impl<'a> AckSubject<'a> {
    pub(crate) fn parse(rest: &'a str) -> Option<Self> {
        let t: Vec<&str> = rest.split('.').collect();
        if t.len() != 7 {
            return None;
        }
        Some(Self {
            stream: t[0],
            consumer: t[1],
            delivered: t[2].parse().ok()?,
            stream_seq: t[3].parse().ok()?,
        })
    }
}

pub(crate) async fn handle(js: &Arc<JetStream>, rest: &str, reply: Option<&str>, payload: &[u8]) {
    let (Some(subject), Some(body)) = (AckSubject::parse(rest), AckBody::parse(payload)) else {
        tracing::debug!(rest, "malformed JetStream ack ignored");
        return;
    };
    if let Some(c) = find(js, subject.stream, subject.consumer) {
        let (gi, seq, attempt) = (c.gi, subject.stream_seq, subject.delivered);
        let mut s = c.stream.lock();
        match body {
            AckBody::Ack => {
                s.ack(gi, seq);
            }
            AckBody::Nak(delay) => {
                s.nack(gi, seq, attempt, delay);
            }
            AckBody::Term => {
                if s.is_current(gi, seq, attempt) {
                    s.dead_letter(gi, seq, "terminated by the consumer (+TERM)");
                    s.group_notify(gi).notify_waiters();
                }
            }
            AckBody::InProgress => {
                s.extend(gi, seq, attempt, Instant::now() + c.limits().ack_wait);
            }
        }
    }
    if let Some(reply) = reply {
        js.send(empty(reply)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bodies_and_subjects_parse_like_nats() {
        assert_eq!(AckBody::parse(b"+ACK"), Some(AckBody::Ack));
        assert_eq!(AckBody::parse(b""), Some(AckBody::Ack));
        assert_eq!(AckBody::parse(b"-NAK"), Some(AckBody::Nak(Duration::ZERO)));
        assert_eq!(
            AckBody::parse(b"-NAK {\"delay\":1500000000}"),
            Some(AckBody::Nak(Duration::from_millis(1500)))
        );
        assert_eq!(AckBody::parse(b"+TERM reason"), Some(AckBody::Term));
        assert_eq!(AckBody::parse(b"+WPI"), Some(AckBody::InProgress));
        assert_eq!(AckBody::parse(b"what"), None);
        let s = AckSubject::parse("S.C.2.17.5.1700000000000000000.3").unwrap();
        assert_eq!(
            (s.stream, s.consumer, s.delivered, s.stream_seq),
            ("S", "C", 2, 17)
        );
        assert!(AckSubject::parse("S.C.x.17.5.1.3").is_none());
        assert!(AckSubject::parse("S.C.2.17").is_none());
    }
}
