//! Keeping the log small: messages past `max_age` and dedup ids past the
//! dedup window go, and a log that is mostly dead weight is rewritten from
//! the live state.
//!
//! A rewrite copies the live state under the stream's lock ([`Snapshot`]: the
//! messages are shared bytes, the ids shared strings) and encodes, writes and
//! fsyncs it without the lock (see [`super::StreamShared::compact`]), so
//! publishing goes on while a large log is rewritten.

use std::collections::HashSet;
use std::io;
use std::sync::Arc;

use tokio::time::Instant;

use super::{MSG_ID, Stream, UNCLAIMED_MAX_BYTES, duration_ms, msg_size, seen_size, wall_ms};
use crate::embedded::record::{Record, encode_seen_framed};
use crate::subject;

/// Compaction starts once the log is at least [`super::COMPACT_MIN_BYTES`] large
/// and live content is below this share of it (1/4 = 25%).
const COMPACT_LIVE_DIVISOR: u64 = 4;

/// The records that rebuild a stream's state at one moment.
pub(crate) struct Snapshot {
    /// The config record, the groups, the messages and what each group did with them.
    records: Vec<Record>,
    /// Remembered dedup ids, written right after the config record.
    seen: Vec<(Arc<str>, u64)>,
}

impl Snapshot {
    /// The framed records of the new log.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut records = self.records.iter();
        if let Some(config) = records.next() {
            config.encode_framed(&mut out);
        }
        for (id, ts) in &self.seen {
            encode_seen_framed(id, *ts, &mut out);
        }
        for r in records {
            r.encode_framed(&mut out);
        }
        out
    }
}

impl Stream {
    /// Drops messages older than `max_age`, and dedup ids older than the
    /// dedup window whose message is gone.
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
        self.drop_unclaimed_over(UNCLAIMED_MAX_BYTES);
        let window = max_age.min(duration_ms(self.dedup_window));
        let id_cutoff = now_ms.saturating_sub(window);
        if self.seen_oldest_ms < id_cutoff {
            // A job still queued keeps its id: enqueueing it again must stay a no-op.
            let live: HashSet<&str> = self
                .msgs
                .values()
                .filter_map(|m| m.msg.headers.get(MSG_ID))
                .map(String::as_str)
                .collect();
            let live_bytes = &mut self.live_bytes;
            let mut oldest = u64::MAX;
            let before = self.seen.len();
            self.seen.retain(|id, ts| {
                let keep = *ts >= id_cutoff || live.contains(&**id);
                if keep {
                    oldest = oldest.min(*ts);
                } else {
                    *live_bytes = live_bytes.saturating_sub(seen_size(id));
                }
                keep
            });
            self.seen_oldest_ms = oldest;
            tracing::debug!(stream = %self.name, count = before - self.seen.len(), "dedup ids past the dedup window forgotten");
        }
        self.maybe_compact();
    }

    /// Drops the oldest messages no durable group matches while they add up
    /// to more than `cap` bytes. A message some group matches stays until that
    /// group settles it.
    pub(crate) fn drop_unclaimed_over(&mut self, cap: u64) {
        if self.live_bytes <= cap {
            return;
        }
        let unclaimed: Vec<(u64, u64)> = self
            .msgs
            .values()
            .filter(|m| {
                !self
                    .groups
                    .iter()
                    .any(|g| subject::matches(&g.filter, &m.msg.subject))
            })
            .map(|m| (m.seq, msg_size(m)))
            .collect();
        let mut total: u64 = unclaimed.iter().map(|(_, size)| size).sum();
        let mut dropped = 0usize;
        for (seq, size) in unclaimed {
            if total <= cap {
                break;
            }
            self.remove_msg(seq);
            total -= size;
            dropped += 1;
        }
        if dropped > 0 {
            tracing::debug!(stream = %self.name, count = dropped, "messages no group reads dropped over the cap");
        }
    }

    /// Whether the log is mostly dead weight and worth rewriting.
    pub(crate) fn compaction_due(&self) -> bool {
        let size = self.store.size();
        size >= self.compact_min_bytes
            && self.live_bytes * COMPACT_LIVE_DIVISOR < size
            && size >= self.compacted_bytes.saturating_mul(2)
    }

    /// Asks the broker's maintenance task for a compaction when one is due.
    pub(super) fn maybe_compact(&mut self) {
        if let Some(wake) = &self.compaction_due
            && self.compaction_due()
        {
            wake.notify_one();
        }
    }

    /// Writes the live state as a fresh log, atomically replacing the old one,
    /// holding the lock throughout (for startup, when nothing else runs).
    pub(crate) fn compact(&mut self) -> io::Result<()> {
        let before = self.store.size();
        let frames = self.snapshot().encode();
        self.store.rewrite(&frames)?;
        self.compacted(before);
        Ok(())
    }

    /// Counts a finished rewrite.
    pub(super) fn compacted(&mut self, before: u64) {
        self.compacted_bytes = self.store.size();
        self.compactions += 1;
        tracing::debug!(stream = %self.name, before, after = self.store.size(), count = self.compactions, "stream log compacted");
    }

    /// The records that rebuild the current state. Groups come before messages
    /// so that replaying an ack never deletes a message another group still needs.
    pub(super) fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let now_ms = wall_ms();
        let mut out = vec![self.config_record()];
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
        Snapshot {
            records: out,
            seen: self.seen.iter().map(|(id, ts)| (id.clone(), *ts)).collect(),
        }
    }
}
