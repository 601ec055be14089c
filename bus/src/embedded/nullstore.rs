//! A store that writes nothing. The stream's in-memory state is all there is:
//! a broker without a data directory uses it (nothing survives the process),
//! and a closed stream switches to it so that late acks touch no file.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::record::Record;
use super::store::{RewriteTarget, Rewritten, StreamStore};

/// Discards every record; the stream itself holds the messages.
#[derive(Debug, Default)]
pub(crate) struct NullStore;

impl StreamStore for NullStore {
    fn append(&mut self, _record: &Record) -> io::Result<()> {
        Ok(())
    }

    fn rewrite(&mut self, _frames: &[u8]) -> io::Result<()> {
        Ok(())
    }

    fn begin_rewrite(&mut self) -> Option<RewriteTarget> {
        None
    }

    fn finish_rewrite(&mut self, _new: Rewritten) -> io::Result<()> {
        // The stream was closed while its rewrite was written: the log may
        // belong to another broker now, so the new file is left for the next
        // open to discard.
        Ok(())
    }

    fn abort_rewrite(&mut self, _tmp: &Path) {}

    fn size(&self) -> u64 {
        0
    }

    fn take_dirty(&mut self) -> Option<Arc<File>> {
        None
    }

    fn written(&self) -> u64 {
        0
    }

    fn file(&self) -> Option<Arc<File>> {
        None
    }
}
