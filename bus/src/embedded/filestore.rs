//! The append-only log of one stream: `data_dir/broker/<stream>.log`.
//!
//! Records are framed `[u32 length][u32 crc32 of body][body]`. A crash can leave
//! a torn last record; on open the log is cut back to the last record that
//! checks out, with a warning, and the broker starts anyway. Compaction writes
//! the live state to `<stream>.log.tmp`, fsyncs it, and renames it over the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{FRAME_HEADER, Record};
use super::store::StreamStore;

/// No single record is larger than this; a bigger length field is corruption,
/// not a reason to allocate.
const MAX_RECORD: usize = 256 * 1024 * 1024;

pub(crate) struct FileStore {
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    dirty: bool,
}

impl FileStore {
    /// Opens (or creates) the log at `path` and returns its records in order.
    pub(crate) fn open(path: &Path) -> io::Result<(Self, Vec<Record>)> {
        let tmp = tmp_path(path);
        if tmp.exists() {
            // A compaction that did not reach its rename; the log is still whole.
            fs::remove_file(&tmp)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let (records, good) = parse(&buf);
        if good < buf.len() {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = good,
                dropped_bytes = buf.len() - good,
                records = records.len(),
                "stream log has a torn or corrupt tail; cutting it at the last good record"
            );
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let store = FileStore {
            path: path.to_path_buf(),
            file: Arc::new(file),
            size: good as u64,
            dirty: false,
        };
        Ok((store, records))
    }
}

/// The records that check out, and the byte length they cover.
fn parse(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= FRAME_HEADER {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let start = pos + FRAME_HEADER;
        if len > MAX_RECORD || buf.len() - start < len {
            break;
        }
        let body = &buf[start..start + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        let Some(record) = Record::decode_body(body) else {
            break;
        };
        records.push(record);
        pos = start + len;
    }
    (records, pos)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

impl StreamStore for FileStore {
    fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64);
        record.encode_framed(&mut buf);
        if let Err(e) = (&*self.file).write_all(&buf) {
            // A half-written record would hide every later one at replay.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += buf.len() as u64;
        self.dirty = true;
        Ok(())
    }

    fn rewrite(&mut self, records: &[Record]) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in records {
            r.encode_framed(&mut buf);
        }
        let tmp = tmp_path(&self.path);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must reach the disk too.
            File::open(dir)?.sync_all()?;
        }
        self.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = buf.len() as u64;
        self.dirty = false;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn take_dirty(&mut self) -> Option<Arc<File>> {
        std::mem::take(&mut self.dirty).then(|| self.file.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;
    use crate::embedded::record::StoredMsg;

    fn msg(seq: u64) -> Record {
        Record::Msg(StoredMsg {
            seq,
            ts_ms: 1,
            msg: Message::new("a.b", format!("payload {seq}")),
        })
    }

    #[test]
    fn records_written_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, recs) = FileStore::open(&path).unwrap();
        assert!(recs.is_empty());
        for seq in 1..=3 {
            store.append(&msg(seq)).unwrap();
        }
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1), msg(2), msg(3)]);
    }

    #[test]
    fn a_log_cut_mid_record_is_truncated_to_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        store.append(&msg(1)).unwrap();
        store.append(&msg(2)).unwrap();
        let good = store.size();
        store.append(&msg(3)).unwrap();
        drop(store);
        let full = fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        drop(f);

        let (mut store, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1), msg(2)]);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        store.append(&msg(4)).unwrap();
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(
            recs,
            vec![msg(1), msg(2), msg(4)],
            "appends after the cut are readable"
        );
    }

    #[test]
    fn garbage_after_the_last_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        store.append(&msg(1)).unwrap();
        drop(store);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            .unwrap();
        drop(f);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1)]);
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum_and_ends_the_replay_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        store.append(&msg(1)).unwrap();
        let first = store.size() as usize;
        store.append(&msg(2)).unwrap();
        drop(store);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1)]);
        assert_eq!(fs::metadata(&path).unwrap().len() as usize, first);
    }

    #[test]
    fn a_rewrite_replaces_the_log_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        for seq in 1..=10 {
            store.append(&msg(seq)).unwrap();
        }
        store.rewrite(&[msg(9), msg(10)]).unwrap();
        store.append(&msg(11)).unwrap();
        assert!(!tmp_path(&path).exists());
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(9), msg(10), msg(11)]);
    }
}
