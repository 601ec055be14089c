//! Settling push deliveries, and leaving a group when a subscription goes.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::StreamShared;
use crate::message::{AckKind, Acker};

/// Acks and nacks of one push delivery.
pub(super) struct GroupAcker {
    pub(super) stream: Weak<StreamShared>,
    pub(super) group: usize,
    pub(super) seq: u64,
    pub(super) attempt: u32,
    /// How long a `+WPI`-style keep-alive holds it from now.
    pub(super) ack_wait: Duration,
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

    fn in_progress(&self) {
        let Some(stream) = self.stream.upgrade() else {
            return;
        };
        let deadline = Instant::now() + self.ack_wait;
        stream
            .lock()
            .extend(self.group, self.seq, self.attempt, deadline);
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
