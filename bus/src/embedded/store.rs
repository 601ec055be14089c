//! The storage port of a stream (nats-server's `store.go`).
//!
//! A stream keeps its live state in memory and hands every change to its store
//! as a [`Record`]; the store decides how durable that is. [`super::nullstore`]
//! writes nothing, [`super::filestore`] appends to a checksummed log.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::record::Record;

pub(crate) trait StreamStore: Send {
    /// Appends one record. Written to the OS at once; flushed to disk by the
    /// caller per the broker's `SyncPolicy` (see [`StreamStore::take_dirty`]).
    fn append(&mut self, record: &Record) -> io::Result<()>;

    /// Replaces the whole log with `records`, atomically: after a crash either
    /// the old or the new log is found, never a mix.
    fn rewrite(&mut self, records: &[Record]) -> io::Result<()>;

    /// Bytes the log takes now.
    fn size(&self) -> u64;

    /// A handle to fsync outside the stream's lock, if anything was written since
    /// the last call.
    fn take_dirty(&mut self) -> Option<Arc<File>>;
}
