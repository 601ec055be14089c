//! A store that writes nothing. The stream's in-memory state is all there is:
//! a broker without a data directory uses it (nothing survives the process),
//! and a closed stream switches to it so that late acks touch no file.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::record::Record;
use super::store::StreamStore;

/// Discards every record; the stream itself holds the messages.
#[derive(Debug, Default)]
pub(crate) struct NullStore;

impl StreamStore for NullStore {
    fn append(&mut self, _record: &Record) -> io::Result<()> {
        Ok(())
    }

    fn rewrite(&mut self, _records: &[Record]) -> io::Result<()> {
        Ok(())
    }

    fn size(&self) -> u64 {
        0
    }

    fn take_dirty(&mut self) -> Option<Arc<File>> {
        None
    }
}
