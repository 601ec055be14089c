//! Keeping the log small: messages and dedup ids past `max_age` go, and a log
//! that is mostly dead weight is rewritten from the live state.

use std::io;

use tokio::time::Instant;

use super::{Stream, duration_ms, seen_size, wall_ms};
use crate::embedded::record::Record;

/// Compaction starts once the log is at least [`super::COMPACT_MIN_BYTES`] large
/// and live content is below this share of it (1/4 = 25%).
const COMPACT_LIVE_DIVISOR: u64 = 4;

impl Stream {
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
    pub(super) fn maybe_compact(&mut self) {
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
}
