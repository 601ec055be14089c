//! A durable group's bookkeeping per message, and what members do with it:
//! take deliveries, ack, nack, extend, dead-letter.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::{PULL_MEMBER, Stream, duration_ms, wall_ms};
use crate::GroupOptions;
use crate::Message;
use crate::embedded::record::{DeadLetter, Record};
use crate::subject;

/// How far past blocked keys a group looks for a deliverable message; beyond
/// this a hot key makes others wait rather than cost a scan per wake-up.
const KEY_SCAN_LIMIT: usize = 4096;

/// A delivery waiting for its ack.
#[derive(Debug)]
pub(super) struct InFlight {
    member: u64,
    deadline: Instant,
    attempt: u32,
    key: Option<String>,
}

/// One durable group's state per message of its filter.
pub(super) struct Group {
    pub(super) name: String,
    pub(super) filter: String,
    pub(super) max_deliveries: u32,
    pub(super) members: HashSet<u64>,
    pub(super) pending: BTreeSet<u64>,
    pub(super) in_flight: HashMap<u64, InFlight>,
    pub(super) delayed: HashMap<u64, Instant>,
    pub(super) done: HashSet<u64>,
    pub(super) deliveries: HashMap<u64, u32>,
    pub(super) notes: HashMap<u64, Vec<String>>,
    pub(super) dead: BTreeMap<u64, DeadLetter>,
    /// Keys with a delivery in flight: later messages of the key wait for it.
    pub(super) busy_keys: HashMap<String, usize>,
    pub(super) notify: Arc<Notify>,
}

impl Group {
    pub(super) fn new(name: String, filter: String) -> Self {
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

    pub(super) fn settled(&self, seq: u64) -> bool {
        self.done.contains(&seq) || self.dead.contains_key(&seq)
    }

    pub(super) fn take_in_flight(&mut self, seq: u64) -> Option<InFlight> {
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
    pub(super) fn forget(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.take_in_flight(seq);
        self.delayed.remove(&seq);
        self.done.remove(&seq);
        self.deliveries.remove(&seq);
        self.notes.remove(&seq);
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
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

impl Stream {
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

    /// Hands delivery `attempt` of `seq` back uncounted: available again after
    /// `delay`, and its next delivery carries the same attempt number. `false`
    /// if that delivery is not the one in flight.
    pub(crate) fn release(&mut self, gi: usize, seq: u64, attempt: u32, delay: Duration) -> bool {
        let held = self.groups[gi]
            .in_flight
            .get(&seq)
            .is_some_and(|f| f.attempt == attempt);
        if self.closed || !held || !self.is_current(gi, seq, attempt) {
            return false;
        }
        let uncounted = attempt.saturating_sub(1);
        // The delivery count as it was before this delivery, also after a restart.
        self.log(&Record::Delivered {
            group: gi as u32,
            seq,
            count: uncounted,
        });
        self.groups[gi].deliveries.insert(seq, uncounted);
        if delay.is_zero() {
            let g = &mut self.groups[gi];
            g.take_in_flight(seq);
            g.pending.insert(seq);
        } else {
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
            reason: reason.to_string(),
            dead_at_ms: wall_ms(),
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

    /// Every group's dead letters: (group index, group name, letter).
    pub(crate) fn all_dead_letters(&self) -> Vec<(usize, &str, &DeadLetter)> {
        self.groups
            .iter()
            .enumerate()
            .flat_map(|(gi, g)| g.dead.values().map(move |d| (gi, g.name.as_str(), d)))
            .collect()
    }

    /// Gives dead letter `seq` back to group `gi` alone: the message is stored
    /// again under a new sequence, the other groups reading its subject settle
    /// that copy at once, and the dead letter goes. Returns the new sequence,
    /// `None` if the group has no such dead letter.
    pub(crate) fn replay_dead(&mut self, gi: usize, seq: u64) -> io::Result<Option<u64>> {
        let Some(letter) = self.groups.get(gi).and_then(|g| g.dead.get(&seq)) else {
            return Ok(None);
        };
        let msg = letter.stored.msg.clone();
        let subject = msg.subject.clone();
        // Not deduplicated: its id was seen when it was first published.
        let Some(new_seq) = self.append(msg, false)? else {
            return Ok(None);
        };
        let others: Vec<usize> = (0..self.groups.len())
            .filter(|&o| o != gi && subject::matches(&self.groups[o].filter, &subject))
            .collect();
        for o in others {
            self.log(&Record::Ack {
                group: o as u32,
                seq: new_seq,
            });
            self.apply_ack(o, new_seq);
        }
        self.remove_dead(gi, seq);
        tracing::info!(stream = %self.name, group = %self.groups[gi].name, seq, new_seq,
            "dead letter replayed to its group");
        Ok(Some(new_seq))
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
}
