//! The store of a broker without a data directory: nothing survives the process.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::record::Record;
use super::store::StreamStore;

/// The stream itself holds the messages; there is nothing to write.
#[derive(Debug, Default)]
pub(crate) struct MemStore;

impl StreamStore for MemStore {
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
