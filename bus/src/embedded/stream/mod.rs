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
//!
//! One file a job: [`group`] holds a group's bookkeeping and the operations on
//! it, [`replay`] applies log records to the state, [`compaction`] expires old
//! messages and rewrites the log, [`shared`] is the stream behind its lock
//! (group commit, compaction without the lock), [`acker`] settles push
//! deliveries and [`pump`] feeds a push subscription.

mod acker;
mod compaction;
mod group;
mod pump;
mod replay;
mod shared;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::record::{Record, StoredMsg};
use super::store::StreamStore;
use crate::subject;
use crate::{GroupOptions, Message, StreamConfig};

pub(crate) use self::acker::MemberGuard;
use self::group::Group;
pub(crate) use self::pump::pump;
#[cfg(test)]
pub(crate) use self::shared::CompactionGate;
pub(crate) use self::shared::StreamShared;

/// Header carrying a message's deduplication id (the JetStream name, so NATS
/// clients can use it too). A second message with an id still remembered is
/// not stored.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";

/// A log smaller than this is never compacted.
pub(crate) const COMPACT_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// How long dedup ids are remembered unless the broker says otherwise
/// (never longer than the stream's `max_age`).
pub(crate) const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// Messages that no durable group reads (a subject only plain subscribers
/// follow) are kept for a group that may subscribe later, but in memory and
/// at full rate they would grow by the gigabyte until `max_age`: past this
/// many bytes of them per stream, the oldest go first.
pub(crate) const UNCLAIMED_MAX_BYTES: u64 = 64 * 1024 * 1024;

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

pub(crate) struct Stream {
    name: String,
    config: StreamConfig,
    msgs: BTreeMap<u64, StoredMsg>,
    last_seq: u64,
    groups: Vec<Group>,
    /// Deduplication ids and when they were seen (wall ms), kept for the
    /// dedup window (at most `max_age`), and as long as their message is kept.
    /// Shared strings: a compaction copies them all under the lock.
    seen: HashMap<Arc<str>, u64>,
    dedup_window: Duration,
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
    /// Told when a compaction is due; the broker's maintenance task runs it
    /// (without holding the stream's lock while it writes).
    compaction_due: Option<Arc<Notify>>,
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
            dedup_window: DEFAULT_DEDUP_WINDOW,
            seen_oldest_ms: u64::MAX,
            store,
            live_bytes: 0,
            compact_min_bytes: COMPACT_MIN_BYTES,
            compacted_bytes: 0,
            compactions: 0,
            compaction_due: None,
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

    /// How long dedup ids are remembered (never past `max_age`).
    pub(crate) fn set_dedup_window(&mut self, window: Duration) {
        self.dedup_window = window;
    }

    /// Whom to tell when the log is due for a compaction.
    pub(crate) fn set_compaction_wake(&mut self, wake: Arc<Notify>) {
        self.compaction_due = Some(wake);
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
            && self.seen.contains_key(id.as_str())
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

    /// A handle to fsync, if anything was written since the last one.
    pub(crate) fn take_dirty(&mut self) -> Option<Arc<File>> {
        self.store.take_dirty()
    }

    /// Records written to the log so far (see [`StreamShared::sync_through`]).
    pub(crate) fn written(&self) -> u64 {
        self.store.written()
    }

    /// Stops all writes and wakes every waiter so that it sees the stream closed.
    pub(crate) fn close(&mut self) -> Option<Arc<File>> {
        self.closed = true;
        let dirty = self.store.take_dirty();
        // Later acks of deliveries still out there must not touch the file:
        // another broker may own it by then.
        self.store = Box::new(super::nullstore::NullStore);
        for g in &self.groups {
            g.notify.notify_waiters();
        }
        dirty
    }
}
