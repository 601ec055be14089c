//! Pull requests (`CONSUMER.MSG.NEXT.<stream>.<consumer>`) and the task of
//! each consumer that answers them from the stream's group.
//!
//! A request asks for `batch` messages and waits up to `expires` (nanoseconds;
//! none: until filled). Each message goes to the request's reply subject with
//! its own subject and an ack subject as the reply; a request that expires
//! gets `408` with `Nats-Pending-Messages` (what it still wanted), a `no_wait`
//! request that finds nothing gets `404`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::time::Instant;

use super::consumer_api::{Consumer, find};
use super::{ACK_PREFIX, JetStream, nanos, now_ns};
use crate::Message;
use crate::embedded::stream::PULL_MEMBER;
use crate::wire::{REPLY_HEADER, SUBJECT_HEADER};

/// Pull requests a consumer keeps waiting; the oldest is expired beyond this.
pub(crate) const MAX_WAITING: usize = 512;
/// The task re-checks at least this often (stream closed, clock-based expiry).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// A pull request waiting for messages.
#[derive(Debug)]
pub(crate) struct Waiting {
    reply: String,
    remaining: usize,
    delivered: usize,
    expires: Option<Instant>,
    no_wait: bool,
}

/// `CONSUMER.MSG.NEXT.<rest>`.
pub(crate) async fn request(js: &Arc<JetStream>, rest: &str, reply: Option<&str>, payload: &[u8]) {
    let Some(reply) = reply else {
        return;
    };
    let Some((stream, name)) = rest.split_once('.') else {
        return;
    };
    let Some(consumer) = find(js, stream, name) else {
        // No such consumer, so nobody listens on its next subject (nats-server's answer).
        js.respond_status(reply, 503, &[]).await;
        return;
    };
    let (batch, expires, no_wait) = parse(payload);
    let overflow = {
        let mut waiting = consumer.lock_waiting();
        waiting.push_back(Waiting {
            reply: reply.to_string(),
            remaining: batch.max(1),
            delivered: 0,
            expires: expires.map(|e| Instant::now() + e),
            no_wait,
        });
        if waiting.len() > MAX_WAITING {
            waiting.pop_front()
        } else {
            None
        }
    };
    if let Some(old) = overflow {
        expired(js, &old).await;
    }
    consumer.wake.notify_one();
}

/// The body: empty (one message), a bare number (the batch), or JSON.
fn parse(payload: &[u8]) -> (usize, Option<Duration>, bool) {
    let text = std::str::from_utf8(payload).unwrap_or("").trim();
    if text.is_empty() {
        return (1, None, false);
    }
    if let Ok(n) = text.parse::<usize>() {
        return (n, None, false);
    }
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let batch = v["batch"]
        .as_u64()
        .map_or(1, |b| usize::try_from(b).unwrap_or(usize::MAX));
    let expires = nanos(&v["expires"]).filter(|d| !d.is_zero());
    (batch, expires, v["no_wait"].as_bool().unwrap_or(false))
}

async fn expired(js: &JetStream, w: &Waiting) {
    let headers = [
        ("Nats-Pending-Messages", w.remaining.to_string()),
        ("Nats-Pending-Bytes", "0".to_string()),
    ];
    js.respond_status(&w.reply, 408, &headers).await;
}

enum Out {
    Msg(Message),
    Expired(Waiting),
    NoMessages(Waiting),
}

/// Serves a consumer's pull requests until stopped or the stream closes.
pub(crate) async fn pump(c: Arc<Consumer>, js: Arc<JetStream>) {
    let notify = c.stream.lock().group_notify(c.gi);
    loop {
        let changed = notify.notified();
        tokio::pin!(changed);
        let woken = c.wake.notified();
        tokio::pin!(woken);
        let mut out = Vec::new();
        let next = {
            let mut s = c.stream.lock();
            // Registered under the lock: a change made after we looked wakes us.
            changed.as_mut().enable();
            if s.is_closed() {
                return;
            }
            let limits = c.limits();
            let now = Instant::now();
            s.tick(c.gi, now);
            let mut waiting = c.lock_waiting();
            let mut i = 0;
            while i < waiting.len() {
                if waiting[i].expires.is_some_and(|e| e <= now) {
                    if let Some(w) = waiting.remove(i) {
                        out.push(Out::Expired(w));
                    }
                } else {
                    i += 1;
                }
            }
            while let Some(w) = waiting.front_mut() {
                // The client that asked is gone (its inbox has no subscriber):
                // messages handed to it would wait out their ack wait
                // unseen. nats-server drops such requests too.
                if !js.broker.has_interest(&w.reply) {
                    waiting.pop_front();
                    continue;
                }
                let room = limits
                    .max_ack_pending
                    .saturating_sub(s.in_flight_of(c.gi, PULL_MEMBER));
                let taken = s.take(
                    c.gi,
                    PULL_MEMBER,
                    w.remaining.min(room),
                    now + limits.ack_wait,
                );
                let pending = s.counts(c.gi).pending;
                for t in taken {
                    let cseq = c.delivered.fetch_add(1, Ordering::AcqRel) + 1;
                    let ack = format!(
                        "{ACK_PREFIX}{}.{}.{}.{}.{cseq}.{}.{pending}",
                        c.stream_name,
                        c.name,
                        t.attempt,
                        t.seq,
                        now_ns()
                    );
                    let mut m = t.msg;
                    m.headers.insert(SUBJECT_HEADER.into(), m.subject.clone());
                    m.headers.insert(REPLY_HEADER.into(), ack);
                    m.subject.clone_from(&w.reply);
                    out.push(Out::Msg(m));
                    w.remaining -= 1;
                    w.delivered += 1;
                }
                if w.remaining == 0 {
                    waiting.pop_front();
                } else if w.no_wait {
                    if let Some(w) = waiting.pop_front() {
                        out.push(if w.delivered == 0 {
                            Out::NoMessages(w)
                        } else {
                            Out::Expired(w)
                        });
                    }
                } else {
                    break;
                }
            }
            let expiry = waiting.iter().filter_map(|w| w.expires).min();
            let deadline = s.next_deadline(c.gi);
            [expiry, deadline, Some(now + MAX_SLEEP)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(now + MAX_SLEEP)
        };
        for o in out {
            match o {
                Out::Msg(m) => js.send(m).await,
                Out::Expired(w) => expired(&js, &w).await,
                Out::NoMessages(w) => js.respond_status(&w.reply, 404, &[]).await,
            }
        }
        tokio::select! {
            _ = &mut changed => {}
            _ = &mut woken => {}
            _ = tokio::time::sleep_until(next) => {}
        }
    }
}

/// An empty answer (to an ack sent as a request).
pub(crate) fn empty(reply: &str) -> Message {
    Message::new(reply, Bytes::new())
}
