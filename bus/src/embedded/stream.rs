//! A stream and its durable consumer groups.
//!
//! The stream keeps its live state in memory and logs every change to its
//! [`StreamStore`] first, so replaying the log rebuilds the same state. Each group
//! owns the per-message bookkeeping for the messages its filter matches:
//! available (`pending`), delivered and waiting for an answer (`in_flight`),
//! nacked and waiting for their delay (`delayed`), acked (`done`), given up on
//! (`dead`). A message leaves the stream once every matching group settled it.
//!
//! Timers are not tasks: whoever waits on a group (a push subscription's pump,
//! a queue `reserve`) sleeps until the group's next deadline and calls
//! [`Stream::tick`], which moves expired deliveries and due delays back.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::record::{DeadLetter, Record, StoredMsg};
use super::store::StreamStore;
use crate::message::{AckKind, Acker};
use crate::subject;
use crate::{Delivery, GroupOptions, Message, StreamConfig};

/// Header carrying a message's deduplication id (the JetStream name, so NATS
/// clients can use it too). A second message with an id still remembered is
/// not stored.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";

/// Compaction starts once the log is at least this large …
pub(crate) const COMPACT_MIN_BYTES: u64 = 16 * 1024 * 1024;
/// … and live content is below this share of it (1/4 = 25%).
const COMPACT_LIVE_DIVISOR: u64 = 4;

/// How far past blocked keys a group looks for a deliverable message; beyond
/// this a hot key makes others wait rather than cost a scan per wake-up.
const KEY_SCAN_LIMIT: usize = 4096;

/// The member id of pull consumers (the job queue); never has a push channel.
pub(crate) const PULL_MEMBER: u64 = 0;

pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct InFlight {
    member: u64,
    deadline: Instant,
    attempt: u32,
    key: Option<String>,
}

struct Group {
    name: String,
    filter: String,
    max_deliveries: u32,
    members: HashSet<u64>,
    pending: BTreeSet<u64>,
    in_flight: HashMap<u64, InFlight>,
    delayed: HashMap<u64, Instant>,
    done: HashSet<u64>,
    deliveries: HashMap<u64, u32>,
    notes: HashMap<u64, Vec<String>>,
    dead: BTreeMap<u64, DeadLetter>,
    /// Keys with a delivery in flight: later messages of the key wait for it.
    busy_keys: HashMap<String, usize>,
    notify: Arc<Notify>,
}

impl Group {
    fn new(name: String, filter: String) -> Self {
        Self {
            name,
            filter,
            max_deliveries: GroupOptions::default().max_deliveries,
            members: HashSet::new(),
            pending: BTreeSet::new(),
            in_flight: HashMap::new(),
            delayed: HashMap::new(),
            done: HashSet::new(),
            deliveries: HashMap::new(),
            notes: HashMap::new(),
            dead: BTreeMap::new(),
            busy_keys: HashMap::new(),
            notify: Arc::new(Notify::new()),
        }
    }

    fn settled(&self, seq: u64) -> bool {
        self.done.contains(&seq) || self.dead.contains_key(&seq)
    }

    fn take_in_flight(&mut self, seq: u64) -> Option<InFlight> {
        let f = self.in_flight.remove(&seq)?;
        if let Some(k) = &f.key
            && let Some(n) = self.busy_keys.get_mut(k)
        {
            *n -= 1;
            if *n == 0 {
                self.busy_keys.remove(k);
            }
        }
        Some(f)
    }

    /// Forgets every trace of `seq` except a dead letter.
    fn forget(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.take_in_flight(seq);
        self.delayed.remove(&seq);
        self.done.remove(&seq);
        self.deliveries.remove(&seq);
        self.notes.remove(&seq);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let flights = self.in_flight.values().map(|f| f.deadline);
        flights.chain(self.delayed.values().copied()).min()
    }
}

/// A message handed out by [`Stream::take`].
pub(crate) struct Taken {
    pub seq: u64,
    pub msg: Message,
    pub attempt: u32,
    pub notes: Vec<String>,
}

/// Counts for the job queue's stats.
pub(crate) struct GroupCounts {
    pub pending: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead: u64,
}

pub(crate) struct Stream {
    name: String,
    config: StreamConfig,
    msgs: BTreeMap<u64, StoredMsg>,
    last_seq: u64,
    groups: Vec<Group>,
    /// Deduplication ids and when they were seen (wall ms), kept for `max_age`.
    seen: HashMap<String, u64>,
    /// No remembered id is older than this (`u64::MAX`: none), so `expire`
    /// scans the whole set only when some id is due to go.
    seen_oldest_ms: u64,
    store: Box<dyn StreamStore>,
    /// Rough bytes of the state a compaction would write: messages, dead
    /// letters and dedup ids.
    live_bytes: u64,
    compact_min_bytes: u64,
    /// Log size right after the last compaction. The log must double past it
    /// before the next one, so rewrites cost O(1) amortized per appended byte
    /// even when `live_bytes` underestimates the snapshot.
    compacted_bytes: u64,
    compactions: u64,
    next_member: u64,
    closed: bool,
}

/// Rough bytes of the `Seen` record of dedup id `id` (frame, tag, length, timestamp).
fn seen_size(id: &str) -> u64 {
    id.len() as u64 + 24
}

fn msg_size(m: &StoredMsg) -> u64 {
    let headers: usize = m
        .msg
        .headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 8)
        .sum();
    (m.msg.payload.len() + m.msg.subject.len() + headers + 48) as u64
}

impl Stream {
    /// A stream rebuilt from its log records (none for a new stream).
    pub(crate) fn restore(
        name: String,
        config: Option<StreamConfig>,
        store: Box<dyn StreamStore>,
        records: Vec<Record>,
    ) -> Self {
        let mut s = Stream {
            config: config.unwrap_or_else(|| StreamConfig::new(name.clone(), &[])),
            name,
            msgs: BTreeMap::new(),
            last_seq: 0,
            groups: Vec::new(),
            seen: HashMap::new(),
            seen_oldest_ms: u64::MAX,
            store,
            live_bytes: 0,
            compact_min_bytes: COMPACT_MIN_BYTES,
            compacted_bytes: 0,
            compactions: 0,
            next_member: PULL_MEMBER + 1,
            closed: false,
        };
        for r in records {
            s.replay(r);
        }
        s
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn config(&self) -> &StreamConfig {
        &self.config
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    #[cfg(test)]
    pub(crate) fn set_compact_min_bytes(&mut self, bytes: u64) {
        self.compact_min_bytes = bytes;
    }

    /// How many times the log was rewritten since the stream was opened.
    #[cfg(test)]
    pub(crate) fn compactions(&self) -> u64 {
        self.compactions
    }

    pub(crate) fn store_size(&self) -> u64 {
        self.store.size()
    }

    pub(crate) fn message_count(&self) -> usize {
        self.msgs.len()
    }

    /// Whether the stream keeps messages of the literal `subject`.
    pub(crate) fn captures(&self, subject: &str) -> bool {
        self.config
            .subjects
            .iter()
            .any(|f| subject::matches(f, subject))
    }

    /// Whether every subject of the filter is kept by this stream.
    pub(crate) fn covers(&self, filter: &str) -> bool {
        self.config
            .subjects
            .iter()
            .any(|s| subject::is_subset(filter, s))
    }

    fn config_record(&self) -> Record {
        Record::Config {
            subjects: self.config.subjects.clone(),
            max_age_ms: duration_ms(self.config.max_age),
            last_seq: self.last_seq,
        }
    }

    /// Sets subjects and max age, logging the change if there is one.
    pub(crate) fn configure(&mut self, config: StreamConfig) -> io::Result<()> {
        if config == self.config && self.store.size() > 0 {
            return Ok(());
        }
        self.config = config;
        let rec = self.config_record();
        self.store.append(&rec)
    }

    fn replay(&mut self, r: Record) {
        match r {
            Record::Config {
                subjects,
                max_age_ms,
                last_seq,
            } => {
                self.config.subjects = subjects;
                self.config.max_age = Duration::from_millis(max_age_ms);
                self.last_seq = self.last_seq.max(last_seq);
            }
            Record::Msg(m) => {
                self.last_seq = self.last_seq.max(m.seq);
                self.apply_msg(m);
            }
            Record::Group { idx, name, filter } => {
                if idx as usize == self.groups.len() {
                    self.apply_group(name, filter);
                } else {
                    tracing::warn!(stream = %self.name, idx, "group record out of order; skipped");
                }
            }
            Record::Delivered { group, seq, count } => {
                let known = self.msgs.contains_key(&seq);
                if let Some(g) = self.groups.get_mut(group as usize)
                    && known
                    && !g.settled(seq)
                {
                    g.deliveries.insert(seq, count);
                    // Delivered after its delay: a restart hands it out again at once.
                    if g.delayed.remove(&seq).is_some() {
                        g.pending.insert(seq);
                    }
                }
            }
            Record::Ack { group, seq } => self.apply_ack(group as usize, seq),
            Record::Nack {
                group,
                seq,
                not_before_ms,
            } => {
                let wait = Duration::from_millis(not_before_ms.saturating_sub(wall_ms()));
                self.apply_delay(group as usize, seq, Instant::now() + wait);
            }
            Record::Note { group, seq, text } => self.apply_note(group as usize, seq, text),
            Record::Dead { group, letter } => self.apply_dead(group as usize, letter),
            Record::DeadRemoved { group, seq } => self.apply_dead_removed(group as usize, seq),
            Record::Seen { id, ts_ms } => self.remember_id(id, ts_ms),
        }
    }

    fn remember_id(&mut self, id: String, ts_ms: u64) {
        let size = seen_size(&id);
        match self.seen.entry(id) {
            Entry::Occupied(mut e) => {
                let ts = e.get_mut();
                *ts = (*ts).max(ts_ms);
            }
            Entry::Vacant(e) => {
                e.insert(ts_ms);
                self.live_bytes += size;
                self.seen_oldest_ms = self.seen_oldest_ms.min(ts_ms);
            }
        }
    }

    fn apply_msg(&mut self, m: StoredMsg) {
        if let Some(id) = m.msg.headers.get(MSG_ID) {
            self.remember_id(id.clone(), m.ts_ms);
        }
        for g in &mut self.groups {
            if subject::matches(&g.filter, &m.msg.subject) {
                g.pending.insert(m.seq);
            }
        }
        self.live_bytes += msg_size(&m);
        self.msgs.insert(m.seq, m);
    }

    fn apply_group(&mut self, name: String, filter: String) {
        let mut g = Group::new(name, filter);
        g.pending = self
            .msgs
            .values()
            .filter(|m| subject::matches(&g.filter, &m.msg.subject))
            .map(|m| m.seq)
            .collect();
        self.groups.push(g);
    }

    fn apply_ack(&mut self, gi: usize, seq: u64) {
        if !self.msgs.contains_key(&seq) {
            return;
        }
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        g.forget(seq);
        g.done.insert(seq);
        self.remove_if_settled(seq);
    }

    fn apply_delay(&mut self, gi: usize, seq: u64, until: Instant) {
        let known = self.msgs.contains_key(&seq);
        if let Some(g) = self.groups.get_mut(gi)
            && known
            && !g.settled(seq)
        {
            g.pending.remove(&seq);
            g.take_in_flight(seq);
            g.delayed.insert(seq, until);
        }
    }

    fn apply_note(&mut self, gi: usize, seq: u64, text: String) {
        let known = self.msgs.contains_key(&seq);
        if let Some(g) = self.groups.get_mut(gi)
            && known
        {
            g.notes.entry(seq).or_default().push(text);
        }
    }

    fn apply_dead(&mut self, gi: usize, letter: DeadLetter) {
        let seq = letter.stored.seq;
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        g.forget(seq);
        self.live_bytes += msg_size(&letter.stored);
        g.dead.insert(seq, letter);
        self.remove_if_settled(seq);
    }

    fn apply_dead_removed(&mut self, gi: usize, seq: u64) {
        let known = self.msgs.contains_key(&seq);
        if let Some(g) = self.groups.get_mut(gi)
            && let Some(letter) = g.dead.remove(&seq)
        {
            self.live_bytes = self.live_bytes.saturating_sub(msg_size(&letter.stored));
            if known {
                // Still settled for this group: the message was re-published.
                g.done.insert(seq);
            }
        }
    }

    /// Deletes the message once every group whose filter matches has settled it;
    /// a message no group matches stays for groups created later.
    fn remove_if_settled(&mut self, seq: u64) {
        let Some(m) = self.msgs.get(&seq) else {
            return;
        };
        let mut matching = self
            .groups
            .iter()
            .filter(|g| subject::matches(&g.filter, &m.msg.subject))
            .peekable();
        if matching.peek().is_none() {
            return;
        }
        if matching.all(|g| g.settled(seq)) {
            self.remove_msg(seq);
        }
    }

    fn remove_msg(&mut self, seq: u64) {
        if let Some(m) = self.msgs.remove(&seq) {
            self.live_bytes = self.live_bytes.saturating_sub(msg_size(&m));
            for g in &mut self.groups {
                g.forget(seq);
            }
        }
    }

    fn log(&mut self, rec: &Record) {
        // An ack or delivery count that did not reach the log only means an
        // extra redelivery after a restart; the live state goes on.
        if let Err(e) = self.store.append(rec) {
            tracing::warn!(stream = %self.name, error = %e, "could not write to the stream log");
        }
    }

    /// Stores a message. `Ok(None)` if its dedup id was seen within `max_age`
    /// (and `dedup` is on).
    pub(crate) fn append(&mut self, msg: Message, dedup: bool) -> io::Result<Option<u64>> {
        if dedup
            && let Some(id) = msg.headers.get(MSG_ID)
            && self.seen.contains_key(id)
        {
            return Ok(None);
        }
        let stored = StoredMsg {
            seq: self.last_seq + 1,
            ts_ms: wall_ms(),
            msg,
        };
        self.store.append(&Record::Msg(stored.clone()))?;
        let seq = stored.seq;
        self.last_seq = seq;
        let subject = stored.msg.subject.clone();
        self.apply_msg(stored);
        for g in &self.groups {
            if subject::matches(&g.filter, &subject) {
                g.notify.notify_waiters();
            }
        }
        Ok(Some(seq))
    }

    /// The index of the group (`name`, `filter`), created if missing; its
    /// `max_deliveries` follows the latest subscriber's options.
    pub(crate) fn ensure_group(
        &mut self,
        name: &str,
        filter: &str,
        options: &GroupOptions,
    ) -> io::Result<usize> {
        let gi = match self
            .groups
            .iter()
            .position(|g| g.name == name && g.filter == filter)
        {
            Some(gi) => gi,
            None => {
                let idx = u32::try_from(self.groups.len())
                    .map_err(|_| io::Error::other("too many groups"))?;
                let rec = Record::Group {
                    idx,
                    name: name.to_string(),
                    filter: filter.to_string(),
                };
                self.store.append(&rec)?;
                self.apply_group(name.to_string(), filter.to_string());
                idx as usize
            }
        };
        self.groups[gi].max_deliveries = options.max_deliveries.max(1);
        Ok(gi)
    }

    /// The last sequence stored (0: none yet).
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The group called `name` (the first, if it reads several filters): index and filter.
    pub(crate) fn group_named(&self, name: &str) -> Option<(usize, String)> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(|gi| (gi, self.groups[gi].filter.clone()))
    }

    pub(crate) fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn group_notify(&self, gi: usize) -> Arc<Notify> {
        self.groups[gi].notify.clone()
    }

    pub(crate) fn add_member(&mut self, gi: usize) -> u64 {
        let id = self.next_member;
        self.next_member += 1;
        self.groups[gi].members.insert(id);
        id
    }

    /// Gives the member's un-acked deliveries back to the group at once.
    pub(crate) fn remove_member(&mut self, gi: usize, member: u64) {
        let g = &mut self.groups[gi];
        g.members.remove(&member);
        let mine: Vec<u64> = g
            .in_flight
            .iter()
            .filter(|(_, f)| f.member == member)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in mine {
            g.take_in_flight(seq);
            g.pending.insert(seq);
        }
        g.notify.notify_waiters();
    }

    pub(crate) fn in_flight_of(&self, gi: usize, member: u64) -> usize {
        let g = &self.groups[gi];
        g.in_flight.values().filter(|f| f.member == member).count()
    }

    pub(crate) fn next_deadline(&self, gi: usize) -> Option<Instant> {
        self.groups[gi].next_deadline()
    }

    /// Moves expired deliveries and due delays back to pending; a delivery that
    /// used up `max_deliveries` goes to the dead letters instead.
    pub(crate) fn tick(&mut self, gi: usize, now: Instant) {
        let g = &mut self.groups[gi];
        let expired: Vec<u64> = g
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        let due: Vec<u64> = g
            .delayed
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(seq, _)| *seq)
            .collect();
        let mut changed = !due.is_empty();
        for seq in due {
            g.delayed.remove(&seq);
            g.pending.insert(seq);
        }
        let mut exhausted = Vec::new();
        for seq in expired {
            changed = true;
            g.take_in_flight(seq);
            if g.deliveries.get(&seq).copied().unwrap_or(0) >= g.max_deliveries {
                exhausted.push(seq);
            } else {
                g.pending.insert(seq);
            }
        }
        for seq in exhausted {
            self.dead_letter(gi, seq, "no ack within the ack wait");
        }
        if changed {
            self.groups[gi].notify.notify_waiters();
        }
    }

    /// Hands up to `limit` available messages to `member`, in sequence order,
    /// skipping keys that have a delivery in flight. They are due back by `deadline`.
    pub(crate) fn take(
        &mut self,
        gi: usize,
        member: u64,
        limit: usize,
        deadline: Instant,
    ) -> Vec<Taken> {
        if self.closed
            || limit == 0
            || (member != PULL_MEMBER && !self.groups[gi].members.contains(&member))
        {
            return Vec::new();
        }
        let g = &self.groups[gi];
        let mut chosen = Vec::new();
        let mut exhausted = Vec::new();
        let mut batch_keys: HashSet<&str> = HashSet::new();
        for &seq in g.pending.iter().take(KEY_SCAN_LIMIT) {
            if chosen.len() >= limit {
                break;
            }
            let Some(m) = self.msgs.get(&seq) else {
                continue;
            };
            if g.deliveries.get(&seq).copied().unwrap_or(0) >= g.max_deliveries {
                exhausted.push(seq);
                continue;
            }
            if let Some(k) = m.msg.key.as_deref()
                && (g.busy_keys.contains_key(k) || !batch_keys.insert(k))
            {
                continue;
            }
            chosen.push(seq);
        }
        for seq in exhausted {
            self.dead_letter(gi, seq, "max deliveries reached");
        }
        let mut out = Vec::with_capacity(chosen.len());
        for seq in chosen {
            let Some(m) = self.msgs.get(&seq) else {
                continue;
            };
            let msg = m.msg.clone();
            let g = &mut self.groups[gi];
            g.pending.remove(&seq);
            let attempt = g.deliveries.get(&seq).copied().unwrap_or(0) + 1;
            g.deliveries.insert(seq, attempt);
            if let Some(k) = &msg.key {
                *g.busy_keys.entry(k.clone()).or_default() += 1;
            }
            g.in_flight.insert(
                seq,
                InFlight {
                    member,
                    deadline,
                    attempt,
                    key: msg.key.clone(),
                },
            );
            let notes = g.notes.get(&seq).cloned().unwrap_or_default();
            let rec = Record::Delivered {
                group: gi as u32,
                seq,
                count: attempt,
            };
            self.log(&rec);
            out.push(Taken {
                seq,
                msg,
                attempt,
                notes,
            });
        }
        out
    }

    /// Whether delivery `attempt` of `seq` is still the current one: not settled,
    /// not waiting for a delay, and not handed out again since.
    pub(crate) fn is_current(&self, gi: usize, seq: u64, attempt: u32) -> bool {
        let g = &self.groups[gi];
        self.msgs.contains_key(&seq)
            && !g.settled(seq)
            && !g.delayed.contains_key(&seq)
            && g.deliveries.get(&seq).copied() == Some(attempt)
    }

    /// Settles `seq` for the group; `false` if it was settled or gone already.
    pub(crate) fn ack(&mut self, gi: usize, seq: u64) -> bool {
        if self.closed || !self.msgs.contains_key(&seq) || self.groups[gi].settled(seq) {
            return false;
        }
        self.log(&Record::Ack {
            group: gi as u32,
            seq,
        });
        self.apply_ack(gi, seq);
        self.groups[gi].notify.notify_waiters();
        self.maybe_compact();
        true
    }

    /// Redelivers delivery `attempt` of `seq` after `delay` (or dead-letters it
    /// if it used up its deliveries). `false` if that delivery is not current.
    pub(crate) fn nack(&mut self, gi: usize, seq: u64, attempt: u32, delay: Duration) -> bool {
        if self.closed || !self.is_current(gi, seq, attempt) {
            return false;
        }
        if attempt >= self.groups[gi].max_deliveries {
            self.dead_letter(gi, seq, "max deliveries reached");
        } else if delay.is_zero() {
            let g = &mut self.groups[gi];
            g.take_in_flight(seq);
            g.pending.insert(seq);
        } else {
            // Rounded up so a restart never shortens the delay.
            let not_before_ms = wall_ms().saturating_add(duration_ms(delay) + 1);
            self.log(&Record::Nack {
                group: gi as u32,
                seq,
                not_before_ms,
            });
            self.apply_delay(gi, seq, Instant::now() + delay);
        }
        self.groups[gi].notify.notify_waiters();
        true
    }

    /// Keeps delivery `attempt` of `seq` in flight until `deadline`.
    pub(crate) fn extend(&mut self, gi: usize, seq: u64, attempt: u32, deadline: Instant) -> bool {
        match self.groups[gi].in_flight.get_mut(&seq) {
            Some(f) if f.attempt == attempt && !self.closed => {
                f.deadline = deadline;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn note(&mut self, gi: usize, seq: u64, text: &str) {
        if self.closed || !self.msgs.contains_key(&seq) {
            return;
        }
        self.log(&Record::Note {
            group: gi as u32,
            seq,
            text: text.to_string(),
        });
        self.apply_note(gi, seq, text.to_string());
    }

    /// Moves `seq` to the group's dead letters, with its notes.
    pub(crate) fn dead_letter(&mut self, gi: usize, seq: u64, reason: &str) {
        let Some(m) = self.msgs.get(&seq) else {
            return;
        };
        let g = &self.groups[gi];
        let letter = DeadLetter {
            stored: m.clone(),
            deliveries: g.deliveries.get(&seq).copied().unwrap_or(0),
            notes: g.notes.get(&seq).cloned().unwrap_or_default(),
        };
        tracing::warn!(
            stream = %self.name,
            group = %g.name,
            filter = %g.filter,
            seq,
            subject = %m.msg.subject,
            deliveries = letter.deliveries,
            reason,
            "message moved to the dead letters"
        );
        self.log(&Record::Dead {
            group: gi as u32,
            letter: letter.clone(),
        });
        self.apply_dead(gi, letter);
        self.maybe_compact();
    }

    pub(crate) fn dead_letters(&self, gi: usize) -> impl Iterator<Item = &DeadLetter> {
        self.groups[gi].dead.values()
    }

    /// Takes a dead letter out of the group (to re-publish it).
    pub(crate) fn remove_dead(&mut self, gi: usize, seq: u64) -> Option<DeadLetter> {
        let letter = self.groups[gi].dead.get(&seq)?.clone();
        self.log(&Record::DeadRemoved {
            group: gi as u32,
            seq,
        });
        self.apply_dead_removed(gi, seq);
        Some(letter)
    }

    pub(crate) fn counts(&self, gi: usize) -> GroupCounts {
        let g = &self.groups[gi];
        GroupCounts {
            pending: g.pending.len() as u64,
            in_flight: g.in_flight.len() as u64,
            delayed: g.delayed.len() as u64,
            dead: g.dead.len() as u64,
        }
    }

    /// Drops messages and dedup ids older than `max_age`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        let max_age = duration_ms(self.config.max_age);
        let cutoff = now_ms.saturating_sub(max_age);
        let old: Vec<u64> = self
            .msgs
            .values()
            .take_while(|m| m.ts_ms < cutoff)
            .map(|m| m.seq)
            .collect();
        if !old.is_empty() {
            tracing::debug!(stream = %self.name, count = old.len(), "messages expired by max_age");
        }
        for seq in old {
            self.remove_msg(seq);
        }
        if self.seen_oldest_ms < cutoff {
            let live = &mut self.live_bytes;
            let mut oldest = u64::MAX;
            self.seen.retain(|id, ts| {
                let keep = *ts >= cutoff;
                if keep {
                    oldest = oldest.min(*ts);
                } else {
                    *live = live.saturating_sub(seen_size(id));
                }
                keep
            });
            self.seen_oldest_ms = oldest;
        }
        self.maybe_compact();
    }

    /// Rewrites the log when it is mostly dead weight.
    fn maybe_compact(&mut self) {
        let size = self.store.size();
        if size >= self.compact_min_bytes
            && self.live_bytes * COMPACT_LIVE_DIVISOR < size
            && size >= self.compacted_bytes.saturating_mul(2)
            && let Err(e) = self.compact()
        {
            tracing::warn!(stream = %self.name, error = %e, "stream log compaction failed");
        }
    }

    /// Writes the live state as a fresh log, atomically replacing the old one.
    pub(crate) fn compact(&mut self) -> io::Result<()> {
        let before = self.store.size();
        let records = self.snapshot();
        self.store.rewrite(&records)?;
        self.compacted_bytes = self.store.size();
        self.compactions += 1;
        tracing::debug!(stream = %self.name, before, after = self.store.size(), count = self.compactions, "stream log compacted");
        Ok(())
    }

    /// The records that rebuild the current state. Groups come before messages
    /// so that replaying an ack never deletes a message another group still needs.
    fn snapshot(&self) -> Vec<Record> {
        let now = Instant::now();
        let now_ms = wall_ms();
        let mut out = vec![self.config_record()];
        out.extend(self.seen.iter().map(|(id, ts)| Record::Seen {
            id: id.clone(),
            ts_ms: *ts,
        }));
        for (i, g) in self.groups.iter().enumerate() {
            out.push(Record::Group {
                idx: i as u32,
                name: g.name.clone(),
                filter: g.filter.clone(),
            });
        }
        out.extend(self.msgs.values().cloned().map(Record::Msg));
        for (i, g) in self.groups.iter().enumerate() {
            let group = i as u32;
            let mut done: Vec<u64> = g.done.iter().copied().collect();
            done.sort_unstable();
            out.extend(done.into_iter().map(|seq| Record::Ack { group, seq }));
            out.extend(g.deliveries.iter().map(|(&seq, &count)| Record::Delivered {
                group,
                seq,
                count,
            }));
            out.extend(g.delayed.iter().map(|(&seq, &until)| Record::Nack {
                group,
                seq,
                not_before_ms: now_ms + duration_ms(until.saturating_duration_since(now)) + 1,
            }));
            for (&seq, notes) in &g.notes {
                out.extend(notes.iter().map(|text| Record::Note {
                    group,
                    seq,
                    text: text.clone(),
                }));
            }
            out.extend(g.dead.values().map(|letter| Record::Dead {
                group,
                letter: letter.clone(),
            }));
        }
        out
    }

    /// A handle to fsync, if anything was written since the last one.
    pub(crate) fn take_dirty(&mut self) -> Option<Arc<File>> {
        self.store.take_dirty()
    }

    /// Stops all writes and wakes every waiter so that it sees the stream closed.
    pub(crate) fn close(&mut self) -> Option<Arc<File>> {
        self.closed = true;
        let dirty = self.store.take_dirty();
        // Later acks of deliveries still out there must not touch the file:
        // another broker may own it by then.
        self.store = Box::new(super::memstore::MemStore);
        for g in &self.groups {
            g.notify.notify_waiters();
        }
        dirty
    }
}

/// A stream behind its lock, shared by the broker, pumps and ackers.
pub(crate) struct StreamShared {
    state: Mutex<Stream>,
}

impl StreamShared {
    pub(crate) fn new(stream: Stream) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(stream),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Stream> {
        self.state.lock().expect("stream lock poisoned")
    }
}

/// Acks and nacks of one push delivery.
struct GroupAcker {
    stream: Weak<StreamShared>,
    group: usize,
    seq: u64,
    attempt: u32,
}

impl Acker for GroupAcker {
    fn settle(&self, kind: AckKind) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let mut s = stream.lock();
        match kind {
            AckKind::Ack => {
                s.ack(self.group, self.seq);
            }
            AckKind::Nack(delay) => {
                s.nack(self.group, self.seq, self.attempt, delay);
            }
        }
    }
}

/// Removes a push member from its group when its subscription goes away.
pub(crate) struct MemberGuard {
    pub stream: Weak<StreamShared>,
    pub group: usize,
    pub member: u64,
}

impl Drop for MemberGuard {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.upgrade()
            && let Ok(mut s) = stream.state.lock()
        {
            s.remove_member(self.group, self.member);
        }
    }
}

/// Feeds one push subscription of a group: takes what the member may have in
/// flight, sends it, and sleeps until something changes or a deadline passes.
pub(crate) async fn pump(
    stream: Arc<StreamShared>,
    group: usize,
    member: u64,
    options: GroupOptions,
    tx: mpsc::Sender<Delivery>,
) {
    let notify = stream.lock().group_notify(group);
    let max_in_flight = options.max_in_flight.max(1);
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        let (batch, deadline) = {
            let mut s = stream.lock();
            // Registered under the lock: a change made after we looked wakes us.
            notified.as_mut().enable();
            if s.is_closed() {
                return;
            }
            let now = Instant::now();
            s.tick(group, now);
            let room = max_in_flight.saturating_sub(s.in_flight_of(group, member));
            let batch = s.take(group, member, room, now + options.ack_wait);
            (batch, s.next_deadline(group))
        };
        let got_some = !batch.is_empty();
        for t in batch {
            let acker = Arc::new(GroupAcker {
                stream: Arc::downgrade(&stream),
                group,
                seq: t.seq,
                attempt: t.attempt,
            });
            // The channel holds max_in_flight and everything in it is in flight,
            // so it only fails once the subscriber is gone (the guard then gives
            // the messages back).
            if tx
                .try_send(Delivery::with_acker(t.msg, t.attempt, acker))
                .is_err()
            {
                return;
            }
        }
        if got_some {
            continue;
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut notified => {}
            _ = sleep => {}
            _ = tx.closed() => return,
        }
    }
}
