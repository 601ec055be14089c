//! The storage port of a stream (nats-server's `store.go`).
//!
//! A stream keeps its live state in memory and hands every change to its store
//! as a [`Record`]; the store decides how durable that is. [`super::nullstore`]
//! writes nothing, [`super::filestore`] appends to a checksummed log.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::Record;

pub(crate) trait StreamStore: Send {
    /// Appends one record. Written to the OS at once; flushed to disk by the
    /// caller per the broker's `SyncPolicy` (see [`StreamStore::take_dirty`]).
    fn append(&mut self, record: &Record) -> io::Result<()>;

    /// Replaces the whole log with `frames` (encoded records), atomically:
    /// after a crash either the old or the new log is found, never a mix.
    /// Blocks while it writes.
    fn rewrite(&mut self, frames: &[u8]) -> io::Result<()>;

    /// Starts a rewrite that is written without the stream's lock: from now
    /// on appends are also kept for the new log. `None`: nothing to write
    /// (no file) or a rewrite is under way already.
    fn begin_rewrite(&mut self) -> Option<RewriteTarget>;

    /// Adds what was appended since [`begin_rewrite`](Self::begin_rewrite) to
    /// the new log and puts it in place of the old one. On an error the old
    /// log stays, complete.
    fn finish_rewrite(&mut self, new: Rewritten) -> io::Result<()>;

    /// Gives up a rewrite (its writing failed).
    fn abort_rewrite(&mut self, tmp: &Path);

    /// Bytes the log takes now.
    fn size(&self) -> u64;

    /// A handle to fsync outside the stream's lock, if anything was written since
    /// the last call.
    fn take_dirty(&mut self) -> Option<Arc<File>>;

    /// Records appended so far: a clock for the group commit, which fsyncs
    /// everything up to a count at once.
    fn written(&self) -> u64;

    /// The file to fsync, if there is one.
    fn file(&self) -> Option<Arc<File>>;
}

/// Where an off-lock rewrite writes its new log.
#[derive(Debug)]
pub(crate) struct RewriteTarget {
    pub tmp: PathBuf,
}

/// A new log written and fsynced, waiting to replace the old one.
#[derive(Debug)]
pub(crate) struct Rewritten {
    pub tmp: PathBuf,
    pub file: File,
    pub len: u64,
}

impl RewriteTarget {
    /// Writes `frames` (encoded records) as the new log and fsyncs it. Runs
    /// without the stream's lock.
    pub(crate) fn write(self, frames: &[u8]) -> io::Result<Rewritten> {
        let file = super::filestore::write_new_log(&self.tmp, frames)?;
        Ok(Rewritten {
            tmp: self.tmp,
            file,
            len: frames.len() as u64,
        })
    }
}
