//! Helpers shared by the cases: bounded waits, readers on their own tasks,
//! and collecting until every expected message arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Bus, Delivery, GroupOptions, Message, Subscription};

/// The next delivery; fails the case if none comes within `within`.
pub(crate) async fn next(sub: &mut Subscription, within: Duration, what: &str) -> Delivery {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(d)) => d,
        Ok(None) => panic!("subscription ended while waiting for {what}"),
        Err(_) => panic!("no delivery within {within:?} while waiting for {what}"),
    }
}

/// A delivery that arrives within `within`, if any.
pub(crate) async fn maybe_next(sub: &mut Subscription, within: Duration) -> Option<Delivery> {
    tokio::time::timeout(within, sub.next())
        .await
        .ok()
        .flatten()
}

pub(crate) fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message.payload).into_owned()
}

/// Messages carry their identity in the payload, so that adapters without
/// headers can be checked too; the `event-id` header goes along where supported.
pub(crate) fn msg(subject: &str, payload: &str) -> Message {
    Message::new(subject, payload.to_string())
        .with_header(crate::header::EVENT_ID, uuid::Uuid::new_v4().to_string())
}

pub(crate) async fn publish(bus: &dyn Bus, m: Message) {
    let subject = m.subject.clone();
    bus.publish(m)
        .await
        .unwrap_or_else(|e| panic!("publish to {subject} failed: {e}"));
}

pub(crate) fn opts(ack_wait: Duration, max_in_flight: usize) -> GroupOptions {
    GroupOptions {
        ack_wait,
        max_deliveries: 100,
        max_in_flight,
    }
}

/// `<prefix>-<i>` for `i` in `0..n`.
pub(crate) fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// One delivery seen by a reader task.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    pub member: usize,
    pub subject: String,
    pub payload: String,
    pub key: Option<String>,
    pub attempt: u32,
}

/// A task that is aborted (dropping its subscription) when this is dropped.
pub(crate) struct Reader(JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads `sub` on its own task and reports every delivery, then acks it after
/// `work` (reported first: a report never trails the next delivery of its key).
pub(crate) fn spawn_acking_reader(
    mut sub: Subscription,
    member: usize,
    work: Duration,
    tx: mpsc::UnboundedSender<Got>,
) -> Reader {
    Reader(tokio::spawn(async move {
        while let Some(d) = sub.next().await {
            let got = Got {
                member,
                subject: d.message.subject.clone(),
                payload: text(&d),
                key: d.message.key.clone(),
                attempt: d.attempt,
            };
            if tx.send(got).is_err() {
                return;
            }
            if !work.is_zero() {
                tokio::time::sleep(work).await;
            }
            d.ack();
        }
    }))
}

/// Receives reports until every payload of `want` was seen at least once;
/// fails the case, naming what is missing, if that takes longer than `within`.
pub(crate) async fn gather(
    rx: &mut mpsc::UnboundedReceiver<Got>,
    want: &BTreeSet<String>,
    within: Duration,
    what: &str,
) -> Vec<Got> {
    let deadline = Instant::now() + within;
    let mut seen = BTreeSet::new();
    let mut all = Vec::new();
    while !want.is_subset(&seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(got)) => {
                seen.insert(got.payload.clone());
                all.push(got);
            }
            Ok(None) => panic!("{what}: the readers stopped early"),
            Err(_) => {
                let missing: Vec<&String> = want.difference(&seen).collect();
                panic!(
                    "{what}: {} of {} messages missing after {within:?}, e.g. {:?}",
                    missing.len(),
                    want.len(),
                    &missing[..missing.len().min(5)]
                );
            }
        }
    }
    all
}

/// Fails the case if a payload arrived more than once.
pub(crate) fn assert_no_duplicates(got: &[Got], what: &str) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for g in got {
        *counts.entry(g.payload.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        dups.is_empty(),
        "{what}: duplicates on an exactly-once adapter: {dups:?}"
    );
}
