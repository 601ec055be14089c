//! Durable group subscriptions on a Kafka consumer group, at least once.
//!
//! Kafka keeps one committed offset per partition, while a subscriber settles
//! deliveries one by one and out of order (up to `max_in_flight` at once). The
//! subscription therefore keeps, per assigned partition, every received record
//! that is not yet behind the commit point:
//! - an ack marks its record done; the commit point moves past the longest
//!   run of done records at the head, and only that is committed (every
//!   [`COMMIT_EVERY`], on revoke and on close);
//! - a nack(delay) or an expired `ack_wait` re-emits the same record from
//!   memory after the delay while the commit point stays before it, so other
//!   records (of any partition) keep flowing;
//! - after `max_deliveries` the record is copied to `<topic>.dlq` and counts as
//!   done only once the broker acknowledged the copy; a failed copy is tried
//!   again after a growing pause (up to [`DEAD_LETTER_RETRY_CAP`]) while the
//!   commit point stays before the record, so a crash meanwhile delivers it
//!   again rather than losing it;
//! - on revoke (a rebalance) the done prefix is committed synchronously and the
//!   partition's state dropped: records not yet acked are delivered again by the
//!   partition's next owner, and late acks of the old assignment are ignored
//!   (each assignment has its own epoch), so nothing is lost or committed twice;
//! - when too many records wait un-acked, the assigned partitions are paused
//!   (the consumer keeps polling, so the group membership stays alive).
//!
//! Delivery counts live in memory: a record redelivered after a rebalance or a
//! restart starts again at attempt 1.
//!
//! This module holds that bookkeeping; [`consumer`] runs the Kafka consumer
//! that feeds it.

mod consumer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::time::Instant;

use orderly_bus::{Delivery, GroupOptions, Message};

pub(crate) use self::consumer::subscribe;

/// How long a gap in a partition's offsets is fetched again before the
/// records after it are taken without it (see [`GroupState::receive`]).
const GAP_PATIENCE: Duration = Duration::from_secs(2);
/// The first pause before a failed dead-letter copy is tried again; it doubles
/// with each failure up to [`DEAD_LETTER_RETRY_CAP`].
const DEAD_LETTER_RETRY_FIRST: Duration = Duration::from_millis(500);
const DEAD_LETTER_RETRY_CAP: Duration = Duration::from_secs(30);

/// Why a record goes to the dead letters after a nack of its last delivery.
const REASON_NACKED: &str = "max deliveries reached";
/// Why a record goes to the dead letters when its last delivery was never settled.
const REASON_NO_ACK: &str = "max deliveries reached (no ack within the ack wait)";

/// The pause before dead-letter copy attempt `failures + 1`.
fn dead_letter_retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (DEAD_LETTER_RETRY_FIRST * 2u32.pow(doublings)).min(DEAD_LETTER_RETRY_CAP)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting in the ready queue to be emitted.
    Queued,
    /// Emitted; redelivered if not settled by the deadline (ack wait).
    InFlight {
        deadline: Instant,
    },
    /// Nacked; queued again at `until`.
    Delayed {
        until: Instant,
    },
    /// Being copied to the dead-letter topic.
    DeadLettering,
    Done,
}

struct Entry {
    message: Message,
    /// Times emitted so far (the delivery's `attempt`).
    deliveries: u32,
    state: State,
    /// Why it is being dead-lettered, once it is.
    dead_reason: &'static str,
    /// Dead-letter copies that failed so far.
    dead_letter_failures: u32,
}

struct PartitionState {
    epoch: u64,
    /// Received records from the commit point on, by offset.
    entries: BTreeMap<i64, Entry>,
    /// The offset to commit (the next record to read after a restart).
    commit_to: Option<i64>,
    /// `commit_to` moved since the last commit.
    dirty: bool,
    /// The highest offset received in this assignment.
    last_received: Option<i64>,
    /// A gap after `last_received` being fetched again, and since when.
    gap_since: Option<Instant>,
}

impl PartitionState {
    /// Drops the done records at the head; returns whether the commit point moved.
    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(entry) = self.entries.first_entry() {
            if entry.get().state != State::Done {
                break;
            }
            let offset = *entry.key();
            entry.remove();
            self.commit_to = Some(offset + 1);
            moved = true;
        }
        self.dirty |= moved;
        moved
    }
}

/// What the consumer loop and the rebalance callback share.
struct GroupState {
    topic: String,
    group: String,
    options: GroupOptions,
    next_epoch: u64,
    partitions: HashMap<i32, PartitionState>,
    /// Records to emit, oldest first: (partition, epoch, offset).
    ready: VecDeque<(i32, u64, i64)>,
    paused: bool,
}

/// One settled delivery, sent by the [`Delivery`]'s acker to the consumer loop.
struct Settle {
    partition: i32,
    epoch: u64,
    offset: i64,
    delivery: u32,
    kind: Outcome,
}

enum Outcome {
    Ack,
    Nack(Duration),
    /// Still being worked on: the ack wait starts again, no delivery counted.
    InProgress,
    /// The broker acknowledged the dead-letter copy; the record counts as done.
    DeadLettered,
    /// The dead-letter copy failed; the record stays uncommitted and is copied again later.
    DeadLetterFailed,
}

struct Acker {
    tx: mpsc::UnboundedSender<Settle>,
    partition: i32,
    epoch: u64,
    offset: i64,
    delivery: u32,
}

impl orderly_bus::Acker for Acker {
    fn settle(&self, kind: orderly_bus::AckKind) {
        let kind = match kind {
            orderly_bus::AckKind::Ack => Outcome::Ack,
            orderly_bus::AckKind::Nack(d) => Outcome::Nack(d),
        };
        self.send(kind);
    }

    fn in_progress(&self) {
        self.send(Outcome::InProgress);
    }
}

impl Acker {
    fn send(&self, kind: Outcome) {
        // The loop is gone once the subscription ended; the record then goes
        // back to the group uncommitted, which is the documented outcome.
        let _ = self.tx.send(Settle {
            partition: self.partition,
            epoch: self.epoch,
            offset: self.offset,
            delivery: self.delivery,
            kind,
        });
    }
}

fn lock(state: &Mutex<GroupState>) -> MutexGuard<'_, GroupState> {
    // A panic while holding it leaves plain data; keep going with it.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupState {
    fn unsettled(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|p| p.entries.values())
            .filter(|e| e.state != State::Done)
            .count()
    }

    fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|p| p.entries.values())
            .filter(|e| matches!(e.state, State::InFlight { .. }))
            .count()
    }

    fn can_emit(&self) -> bool {
        !self.ready.is_empty() && self.in_flight() < self.options.max_in_flight.max(1)
    }

    /// Keeps a received record; returns the offset to fetch again from when
    /// records before this one are missing.
    ///
    /// A partition's records arrive in offset order without gaps on the
    /// topics orderly writes (no transactions, no compaction). tansu 0.6 can
    /// let a fetch return a batch before an earlier one is written, and
    /// librdkafka then moves past the earlier records: acking the later ones
    /// would commit past records never delivered. So a gap is fetched again
    /// (the later record is dropped; it comes again after the earlier ones),
    /// for up to [`GAP_PATIENCE`]; a gap still there then is taken as real
    /// and logged.
    fn receive(
        &mut self,
        partition: i32,
        offset: i64,
        message: Message,
        now: Instant,
    ) -> Option<i64> {
        let Some(p) = self.partitions.get_mut(&partition) else {
            // A record fetched before its partition was revoked; the next
            // owner reads it again.
            return None;
        };
        if p.entries.contains_key(&offset) || p.commit_to.is_some_and(|c| offset < c) {
            return None;
        }
        if let Some(last) = p.last_received
            && offset > last + 1
        {
            let since = *p.gap_since.get_or_insert(now);
            if now.duration_since(since) < GAP_PATIENCE {
                return Some(last + 1);
            }
            tracing::warn!(topic = %self.topic, partition, from = last + 1, to = offset - 1,
                "Kafka offsets missing from the partition; going on without them");
        }
        p.gap_since = None;
        p.last_received = Some(p.last_received.map_or(offset, |last| last.max(offset)));
        p.entries.insert(
            offset,
            Entry {
                message,
                deliveries: 0,
                state: State::Queued,
                dead_reason: REASON_NACKED,
                dead_letter_failures: 0,
            },
        );
        self.ready.push_back((partition, p.epoch, offset));
        None
    }

    /// Takes the next ready record and marks it in flight.
    fn emit(&mut self, tx: &mpsc::UnboundedSender<Settle>) -> Option<Delivery> {
        let ack_wait = self.options.ack_wait;
        while let Some((partition, epoch, offset)) = self.ready.pop_front() {
            let Some(p) = self
                .partitions
                .get_mut(&partition)
                .filter(|p| p.epoch == epoch)
            else {
                continue;
            };
            let Some(entry) = p.entries.get_mut(&offset) else {
                continue;
            };
            if entry.state != State::Queued {
                continue;
            }
            entry.deliveries += 1;
            entry.state = State::InFlight {
                deadline: Instant::now() + ack_wait,
            };
            let acker = Arc::new(Acker {
                tx: tx.clone(),
                partition,
                epoch,
                offset,
                delivery: entry.deliveries,
            });
            return Some(Delivery::with_acker(
                entry.message.clone(),
                entry.deliveries,
                acker,
            ));
        }
        None
    }

    /// Applies a settle; returns a record to dead-letter, if one ran out of deliveries.
    fn settle(&mut self, s: Settle) -> Option<DeadLetter> {
        let max = self.options.max_deliveries.max(1);
        let p = self
            .partitions
            .get_mut(&s.partition)
            .filter(|p| p.epoch == s.epoch)?;
        let entry = p.entries.get_mut(&s.offset)?;
        match s.kind {
            // An ack of an earlier delivery still means the record was handled.
            Outcome::Ack | Outcome::DeadLettered => {
                if entry.state != State::Done {
                    entry.state = State::Done;
                    p.advance();
                }
                None
            }
            Outcome::DeadLetterFailed => {
                if entry.state == State::DeadLettering {
                    entry.dead_letter_failures += 1;
                    // Due again as a delayed record past its last delivery:
                    // `fire_timers` sends it back to the copy, not to a member.
                    entry.state = State::Delayed {
                        until: Instant::now() + dead_letter_retry_delay(entry.dead_letter_failures),
                    };
                }
                None
            }
            Outcome::InProgress => {
                if entry.deliveries == s.delivery && matches!(entry.state, State::InFlight { .. }) {
                    entry.state = State::InFlight {
                        deadline: Instant::now() + self.options.ack_wait,
                    };
                }
                None
            }
            Outcome::Nack(delay) => {
                if entry.deliveries != s.delivery || !matches!(entry.state, State::InFlight { .. })
                {
                    return None;
                }
                if entry.deliveries >= max {
                    entry.state = State::DeadLettering;
                    entry.dead_reason = REASON_NACKED;
                    return Some(DeadLetter::new(
                        &self.group,
                        s.partition,
                        s.epoch,
                        s.offset,
                        entry,
                    ));
                }
                entry.state = State::Delayed {
                    until: Instant::now() + delay,
                };
                None
            }
        }
    }

    /// Moves due delayed records to the ready queue and expires ack waits.
    fn fire_timers(&mut self, now: Instant) -> Vec<DeadLetter> {
        let max = self.options.max_deliveries.max(1);
        let mut dead = Vec::new();
        let mut ready = Vec::new();
        for (&partition, p) in self.partitions.iter_mut() {
            for (&offset, entry) in p.entries.iter_mut() {
                let due = match entry.state {
                    State::InFlight { deadline } => deadline <= now,
                    State::Delayed { until } => until <= now,
                    _ => false,
                };
                if !due {
                    continue;
                }
                if entry.deliveries >= max {
                    if matches!(entry.state, State::InFlight { .. }) {
                        entry.dead_reason = REASON_NO_ACK;
                    }
                    entry.state = State::DeadLettering;
                    dead.push(DeadLetter::new(
                        &self.group,
                        partition,
                        p.epoch,
                        offset,
                        entry,
                    ));
                } else {
                    entry.state = State::Queued;
                    ready.push((partition, p.epoch, offset));
                }
            }
        }
        // Redeliveries go first: they hold the commit point back.
        ready.sort_by_key(|&(p, _, o)| (o, p));
        for r in ready.into_iter().rev() {
            self.ready.push_front(r);
        }
        dead
    }

    fn next_timer(&self) -> Option<Instant> {
        self.partitions
            .values()
            .flat_map(|p| p.entries.values())
            .filter_map(|e| match e.state {
                State::InFlight { deadline } => Some(deadline),
                State::Delayed { until } => Some(until),
                _ => None,
            })
            .min()
    }

    /// Offsets to commit; with `all`, every known commit point, else the moved ones.
    fn commit_list(&mut self, only: Option<&[i32]>, all: bool) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for (&partition, p) in self.partitions.iter_mut() {
            if only.is_some_and(|o| !o.contains(&partition)) {
                continue;
            }
            let Some(to) = p.commit_to else { continue };
            if !(p.dirty || all) {
                continue;
            }
            if tpl
                .add_partition_offset(&self.topic, partition, Offset::Offset(to))
                .is_ok()
            {
                p.dirty = false;
            }
        }
        (tpl.count() > 0).then_some(tpl)
    }

    fn assign(&mut self, partitions: &[i32]) {
        for &partition in partitions {
            self.next_epoch += 1;
            self.partitions.insert(
                partition,
                PartitionState {
                    epoch: self.next_epoch,
                    entries: BTreeMap::new(),
                    commit_to: None,
                    dirty: false,
                    last_received: None,
                    gap_since: None,
                },
            );
        }
    }

    fn revoke(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
        }
        let kept = &self.partitions;
        self.ready
            .retain(|(p, e, _)| kept.get(p).is_some_and(|s| s.epoch == *e));
    }
}

/// A record that ran out of deliveries, on its way to `<topic>.dlq`.
struct DeadLetter {
    /// The Kafka group id (with the topic prefix).
    group: String,
    partition: i32,
    epoch: u64,
    offset: i64,
    deliveries: u32,
    reason: &'static str,
    message: Message,
}

impl DeadLetter {
    fn new(group: &str, partition: i32, epoch: u64, offset: i64, entry: &Entry) -> Self {
        Self {
            group: group.to_string(),
            partition,
            epoch,
            offset,
            deliveries: entry.deliveries,
            reason: entry.dead_reason,
            message: entry.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_partition() -> GroupState {
        let mut st = GroupState {
            topic: "t".into(),
            group: "g".into(),
            options: GroupOptions::default(),
            next_epoch: 0,
            partitions: HashMap::new(),
            ready: VecDeque::new(),
            paused: false,
        };
        st.assign(&[0]);
        st
    }

    fn record(offset: i64) -> Message {
        Message::new("t", format!("r{offset}"))
    }

    fn queued(st: &GroupState) -> Vec<i64> {
        st.ready.iter().map(|&(_, _, o)| o).collect()
    }

    #[tokio::test]
    async fn a_record_after_a_gap_is_dropped_and_the_gap_fetched_again() {
        let mut st = one_partition();
        let now = Instant::now();
        assert_eq!(st.receive(0, 10, record(10), now), None);
        assert_eq!(st.receive(0, 11, record(11), now), None);
        // 12 is missing: 13 is not kept, and 12 is asked for again.
        assert_eq!(st.receive(0, 13, record(13), now), Some(12));
        assert_eq!(queued(&st), [10, 11]);
        // Then they come in order.
        assert_eq!(st.receive(0, 12, record(12), now), None);
        assert_eq!(st.receive(0, 13, record(13), now), None);
        assert_eq!(queued(&st), [10, 11, 12, 13]);
    }

    #[tokio::test]
    async fn acks_after_a_gap_never_commit_past_it() {
        let mut st = one_partition();
        let (tx, _rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        st.receive(0, 0, record(0), now);
        assert_eq!(st.receive(0, 2, record(2), now), Some(1));
        let first = st.emit(&tx).expect("record 0");
        assert_eq!(first.message.payload, "r0");
        assert!(st.emit(&tx).is_none(), "record 2 was not kept");
        st.settle(Settle {
            partition: 0,
            epoch: 1,
            offset: 0,
            delivery: 1,
            kind: Outcome::Ack,
        });
        assert_eq!(st.partitions[&0].commit_to, Some(1), "up to the gap only");
    }

    #[tokio::test]
    async fn a_failed_dead_letter_copy_holds_the_commit_point_and_is_tried_again() {
        let mut st = one_partition();
        st.options.max_deliveries = 1;
        let (tx, _rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        st.receive(0, 0, record(0), now);
        st.receive(0, 1, record(1), now);
        let first = st.emit(&tx).expect("record 0");
        let second = st.emit(&tx).expect("record 1");
        assert_eq!((first.attempt, second.attempt), (1, 1));
        let settle = |offset, kind| Settle {
            partition: 0,
            epoch: 1,
            offset,
            delivery: 1,
            kind,
        };
        st.settle(settle(1, Outcome::Ack));
        let dead = st
            .settle(settle(0, Outcome::Nack(Duration::ZERO)))
            .expect("its last delivery failed");
        assert_eq!((dead.offset, dead.reason), (0, REASON_NACKED));
        st.settle(settle(0, Outcome::DeadLetterFailed));
        assert_eq!(st.partitions[&0].commit_to, None, "nothing committed");
        assert!(st.emit(&tx).is_none(), "not delivered to a member again");
        let later = Instant::now() + DEAD_LETTER_RETRY_CAP;
        let again = st.fire_timers(later);
        assert_eq!(again.len(), 1, "the copy is tried again");
        assert_eq!(again[0].offset, 0);
        st.settle(settle(0, Outcome::DeadLettered));
        assert_eq!(st.partitions[&0].commit_to, Some(2), "done once copied");
    }

    #[test]
    fn dead_letter_retries_back_off_up_to_the_cap() {
        assert_eq!(dead_letter_retry_delay(1), DEAD_LETTER_RETRY_FIRST);
        assert_eq!(dead_letter_retry_delay(2), DEAD_LETTER_RETRY_FIRST * 2);
        assert_eq!(dead_letter_retry_delay(40), DEAD_LETTER_RETRY_CAP);
    }

    #[tokio::test]
    async fn a_gap_that_stays_is_taken_as_real_after_the_patience() {
        let mut st = one_partition();
        let start = Instant::now();
        st.receive(0, 5, record(5), start);
        assert_eq!(st.receive(0, 9, record(9), start), Some(6));
        let later = start + GAP_PATIENCE / 2;
        assert_eq!(st.receive(0, 9, record(9), later), Some(6), "still waiting");
        let past = start + GAP_PATIENCE;
        assert_eq!(st.receive(0, 9, record(9), past), None);
        assert_eq!(queued(&st), [5, 9]);
        // A later gap gets its own patience.
        assert_eq!(st.receive(0, 12, record(12), past), Some(10));
    }
}
