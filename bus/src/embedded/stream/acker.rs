//! Settling push deliveries, and leaving a group when a subscription goes.

use std::sync::Weak;

use super::StreamShared;
use crate::message::{AckKind, Acker};

/// Acks and nacks of one push delivery.
pub(super) struct GroupAcker {
    pub(super) stream: Weak<StreamShared>,
    pub(super) group: usize,
    pub(super) seq: u64,
    pub(super) attempt: u32,
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
