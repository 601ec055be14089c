//! The dead letters of the broker's durable groups, as the [`crate::Bus`]
//! port shows them: listed per stream, replayed to their group alone, purged.
//!
//! A dead letter's id is `<group index>.<sequence>`: both are fixed by the
//! stream's log, so an id stays valid across restarts until it is replayed
//! or purged.

use std::time::{Duration, UNIX_EPOCH};

use super::EmbeddedBroker;
use crate::{BusError, DeadLetter, StreamConfig};

fn parse_id(id: &str) -> Option<(usize, u64)> {
    let (gi, seq) = id.split_once('.')?;
    Some((gi.parse().ok()?, seq.parse().ok()?))
}

impl EmbeddedBroker {
    pub(super) fn list_dead(
        &self,
        stream: &StreamConfig,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BusError> {
        self.ensure_open()?;
        let Some(shared) = self.stream_named(&stream.name) else {
            return Ok(Vec::new());
        };
        let s = shared.lock();
        let mut letters: Vec<_> = s.all_dead_letters();
        letters.sort_by_key(|(gi, _, d)| (d.dead_at_ms, d.stored.seq, *gi));
        Ok(letters
            .into_iter()
            .take(limit)
            .map(|(gi, group, d)| DeadLetter {
                id: format!("{gi}.{}", d.stored.seq),
                group: group.to_string(),
                message: d.stored.msg.clone(),
                reason: if d.reason.is_empty() {
                    "not recorded (dead-lettered by an older version)".into()
                } else {
                    d.reason.clone()
                },
                deliveries: d.deliveries,
                dead_at: (d.dead_at_ms > 0)
                    .then(|| UNIX_EPOCH + Duration::from_millis(d.dead_at_ms)),
            })
            .collect())
    }

    pub(super) async fn replay_dead_letter(
        &self,
        stream: &StreamConfig,
        id: &str,
    ) -> Result<bool, BusError> {
        self.ensure_open()?;
        let (Some(shared), Some((gi, seq))) = (self.stream_named(&stream.name), parse_id(id))
        else {
            return Ok(false);
        };
        let (replayed, dirty) = {
            let mut s = shared.lock();
            if s.is_closed() {
                return Err(BusError::Closed);
            }
            if gi >= s.group_count() {
                return Ok(false);
            }
            let replayed = s.replay_dead(gi, seq)?.is_some();
            (replayed, self.dirty_if_always(&mut s))
        };
        if let Some(file) = dirty {
            super::sync_file(file).await?;
        }
        Ok(replayed)
    }

    pub(super) async fn purge_dead_letter(
        &self,
        stream: &StreamConfig,
        id: &str,
    ) -> Result<bool, BusError> {
        self.ensure_open()?;
        let (Some(shared), Some((gi, seq))) = (self.stream_named(&stream.name), parse_id(id))
        else {
            return Ok(false);
        };
        let (purged, dirty) = {
            let mut s = shared.lock();
            if s.is_closed() {
                return Err(BusError::Closed);
            }
            if gi >= s.group_count() {
                return Ok(false);
            }
            let purged = s.remove_dead(gi, seq).is_some();
            if purged {
                tracing::info!(stream = %stream.name, id, "dead letter purged");
            }
            (purged, self.dirty_if_always(&mut s))
        };
        if let Some(file) = dirty {
            super::sync_file(file).await?;
        }
        Ok(purged)
    }
}
