//! Applying log records to the live state. Replay on restore and every live
//! change go through the same transitions, so both end in the same state.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::group::Group;
use super::{MSG_ID, Stream, msg_size, seen_size, wall_ms};
use crate::embedded::record::{DeadLetter, Record, StoredMsg};
use crate::subject;

impl Stream {
    pub(super) fn replay(&mut self, r: Record) {
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

    pub(super) fn remember_id(&mut self, id: String, ts_ms: u64) {
        if let Some(ts) = self.seen.get_mut(id.as_str()) {
            *ts = (*ts).max(ts_ms);
            return;
        }
        self.live_bytes += seen_size(&id);
        self.seen_oldest_ms = self.seen_oldest_ms.min(ts_ms);
        self.seen.insert(Arc::from(id), ts_ms);
    }

    pub(super) fn apply_msg(&mut self, m: StoredMsg) {
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

    pub(super) fn apply_group(&mut self, name: String, filter: String) {
        let mut g = Group::new(name, filter);
        g.pending = self
            .msgs
            .values()
            .filter(|m| subject::matches(&g.filter, &m.msg.subject))
            .map(|m| m.seq)
            .collect();
        self.groups.push(g);
    }

    pub(super) fn apply_ack(&mut self, gi: usize, seq: u64) {
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

    pub(super) fn apply_delay(&mut self, gi: usize, seq: u64, until: Instant) {
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

    pub(super) fn apply_note(&mut self, gi: usize, seq: u64, text: String) {
        let known = self.msgs.contains_key(&seq);
        if let Some(g) = self.groups.get_mut(gi)
            && known
        {
            g.notes.entry(seq).or_default().push(text);
        }
    }

    pub(super) fn apply_dead(&mut self, gi: usize, letter: DeadLetter) {
        let seq = letter.stored.seq;
        let Some(g) = self.groups.get_mut(gi) else {
            return;
        };
        g.forget(seq);
        self.live_bytes += msg_size(&letter.stored);
        g.dead.insert(seq, letter);
        self.remove_if_settled(seq);
    }

    pub(super) fn apply_dead_removed(&mut self, gi: usize, seq: u64) {
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
    pub(super) fn remove_if_settled(&mut self, seq: u64) {
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

    pub(super) fn remove_msg(&mut self, seq: u64) {
        if let Some(m) = self.msgs.remove(&seq) {
            self.live_bytes = self.live_bytes.saturating_sub(msg_size(&m));
            for g in &mut self.groups {
                g.forget(seq);
            }
        }
    }
}
