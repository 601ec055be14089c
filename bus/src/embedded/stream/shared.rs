//! A stream behind its lock, shared by the broker, pumps and ackers, and the
//! two slow disk operations that must not hold that lock: fsync (a group
//! commit) and compaction.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::Stream;

pub(crate) struct StreamShared {
    pub(super) state: Mutex<Stream>,
    /// Log records (by [`Stream::written`]) known to be on disk.
    synced: AtomicU64,
    /// One fsync at a time; whoever waits here is covered by the next one.
    sync_turn: tokio::sync::Mutex<()>,
    /// Holds a compaction between its snapshot and its write, so a test can
    /// act while the new log is being written.
    #[cfg(test)]
    compaction_gate: Mutex<Option<CompactionGate>>,
}

/// Rung when a compaction took its snapshot; it goes on once `release` is rung.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CompactionGate {
    pub reached: Arc<tokio::sync::Notify>,
    pub release: Arc<tokio::sync::Notify>,
}

impl StreamShared {
    pub(crate) fn new(stream: Stream) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(stream),
            synced: AtomicU64::new(0),
            sync_turn: tokio::sync::Mutex::new(()),
            #[cfg(test)]
            compaction_gate: Mutex::new(None),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Stream> {
        self.state.lock().expect("stream lock poisoned")
    }

    /// Returns once the first `mark` records of the log are on disk.
    ///
    /// A group commit: one fsync runs at a time, and it covers every record
    /// written before it started, so publishers that arrive while it runs
    /// share the next one instead of queueing one fsync each.
    pub(crate) async fn sync_through(&self, mark: u64) -> io::Result<()> {
        if self.synced.load(Ordering::Acquire) >= mark {
            return Ok(());
        }
        let _turn = self.sync_turn.lock().await;
        if self.synced.load(Ordering::Acquire) >= mark {
            return Ok(());
        }
        let (file, target) = {
            let s = self.lock();
            if s.is_closed() {
                return Err(io::Error::other("the stream was closed"));
            }
            (s.store.file(), s.written())
        };
        if let Some(file) = file {
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|e| io::Error::other(format!("fsync task failed: {e}")))??;
        }
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Rewrites the log from the live state. The lock is held to copy the
    /// state and, at the end, to add what was appended meanwhile and swap the
    /// files; encoding, writing and fsyncing the new log happen without it.
    /// `false` if there was nothing to do (no file, or a rewrite under way).
    pub(crate) async fn compact(&self) -> io::Result<bool> {
        let (target, snapshot, before) = {
            let mut s = self.lock();
            if s.is_closed() {
                return Ok(false);
            }
            let Some(target) = s.store.begin_rewrite() else {
                return Ok(false);
            };
            (target, s.snapshot(), s.store.size())
        };
        let tmp = target.tmp.clone();
        #[cfg(test)]
        self.wait_at_gate().await;
        let written = tokio::task::spawn_blocking(move || target.write(&snapshot.encode()))
            .await
            .map_err(|e| io::Error::other(format!("compaction task failed: {e}")))
            .and_then(|r| r);
        let mut s = self.lock();
        let new = match written {
            Ok(new) => new,
            Err(e) => {
                s.store.abort_rewrite(&tmp);
                return Err(e);
            }
        };
        if s.is_closed() {
            // The stream went to a null store; the file is not ours any more.
            return Ok(false);
        }
        s.store.finish_rewrite(new)?;
        // The new log was fsynced whole, with everything written until now.
        self.synced.fetch_max(s.written(), Ordering::AcqRel);
        s.compacted(before);
        Ok(true)
    }

    /// Records known to be on disk.
    #[cfg(test)]
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Makes the next compactions stop at `gate` until released.
    #[cfg(test)]
    pub(crate) fn hold_compactions(&self, gate: CompactionGate) {
        *self.compaction_gate.lock().expect("gate lock poisoned") = Some(gate);
    }

    #[cfg(test)]
    async fn wait_at_gate(&self) {
        let gate = self
            .compaction_gate
            .lock()
            .expect("gate lock poisoned")
            .clone();
        if let Some(gate) = gate {
            gate.reached.notify_one();
            gate.release.notified().await;
        }
    }
}
