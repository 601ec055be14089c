//! The append-only log of one stream: `data_dir/broker/<stream>.log`.
//!
//! Records are framed `[u32 length][u32 crc32 of body][body]`. On open:
//! - a crash can leave a torn last record: the log is cut back to the last
//!   record that checks out, with a warning, and the broker starts anyway;
//! - a damaged record with intact records after it (a bad sector, a flipped
//!   bit) is skipped, and every intact record after it is kept: the reader
//!   resynchronises on the next frame whose length, checksum and body check
//!   out, and logs the file, the offset and how many bytes it skipped.
//!
//! Compaction writes the live state to `<stream>.log.tmp`, fsyncs it, and
//! renames it over the log. The new file is written without the stream's lock
//! ([`RewriteTarget::write`]); records appended meanwhile are captured and
//! added to its end under the lock, just before the rename
//! ([`StreamStore::finish_rewrite`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{FRAME_HEADER, Record};
use super::store::{RewriteTarget, Rewritten, StreamStore};

/// No single record is larger than this; a bigger length field is corruption,
/// not a reason to allocate.
const MAX_RECORD: usize = 256 * 1024 * 1024;

pub(crate) struct FileStore {
    path: PathBuf,
    file: Arc<File>,
    size: u64,
    dirty: bool,
    /// Records appended since open; never goes back, also not on a rewrite.
    written: u64,
    /// Frames appended while a rewrite is written off-lock: they go to the
    /// end of the new log before it replaces the old one.
    capture: Option<Vec<u8>>,
}

/// A stretch of the log that did not check out, with intact records after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Skipped {
    pub offset: usize,
    pub bytes: usize,
}

/// What [`parse`] found in a log.
#[derive(Debug, Default)]
struct Parsed {
    records: Vec<Record>,
    /// Bytes up to the end of the last intact record: anything after is a torn tail.
    good: usize,
    /// Damaged stretches in the middle, each followed by intact records.
    skipped: Vec<Skipped>,
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
        let parsed = parse(&buf);
        for s in &parsed.skipped {
            tracing::error!(
                path = %path.display(),
                offset = s.offset,
                skipped_bytes = s.bytes,
                "stream log has a damaged record in the middle; skipped it and kept every intact record after it (what the damaged bytes held is lost)"
            );
        }
        let good = parsed.good;
        if good < buf.len() {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = good,
                dropped_bytes = buf.len() - good,
                records = parsed.records.len(),
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
            written: 0,
            capture: None,
        };
        Ok((store, parsed.records))
    }
}

/// The intact frame at `pos`: its record and the byte after it.
fn frame_at(buf: &[u8], pos: usize) -> Option<(Record, usize)> {
    let header = buf.get(pos..pos.checked_add(FRAME_HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return None;
    }
    let start = pos + FRAME_HEADER;
    let body = buf.get(start..start.checked_add(len)?)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    let record = Record::decode_body(body)?;
    Some((record, start + len))
}

/// Every intact record. A bad frame is skipped when an intact one follows it
/// somewhere later (found by trying every offset: a frame must match its
/// length, its checksum and decode); with none after it, it is the torn tail.
fn parse(buf: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let mut pos = 0;
    while pos < buf.len() {
        if let Some((record, next)) = frame_at(buf, pos) {
            out.records.push(record);
            pos = next;
            out.good = pos;
            continue;
        }
        let Some(resume) = (pos + 1..buf.len()).find(|&p| frame_at(buf, p).is_some()) else {
            break;
        };
        out.skipped.push(Skipped {
            offset: pos,
            bytes: resume - pos,
        });
        pos = resume;
    }
    out
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a rename in `path`'s directory reach the disk.
fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Writes `frames` (encoded records) to `tmp` and fsyncs it.
pub(super) fn write_new_log(tmp: &Path, frames: &[u8]) -> io::Result<File> {
    let mut f = File::create(tmp)?;
    f.write_all(frames)?;
    f.sync_all()?;
    Ok(f)
}

impl FileStore {
    fn reopen(&mut self) -> io::Result<()> {
        self.file = Arc::new(
            OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.path)?,
        );
        Ok(())
    }
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
        self.written += 1;
        if let Some(tail) = &mut self.capture {
            tail.extend_from_slice(&buf);
        }
        Ok(())
    }

    fn rewrite(&mut self, frames: &[u8]) -> io::Result<()> {
        let tmp = tmp_path(&self.path);
        write_new_log(&tmp, frames)?;
        fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)?;
        self.reopen()?;
        self.size = frames.len() as u64;
        self.dirty = false;
        self.capture = None;
        Ok(())
    }

    fn begin_rewrite(&mut self) -> Option<RewriteTarget> {
        if self.capture.is_some() {
            return None;
        }
        self.capture = Some(Vec::new());
        Some(RewriteTarget {
            tmp: tmp_path(&self.path),
        })
    }

    fn finish_rewrite(&mut self, new: Rewritten) -> io::Result<()> {
        let tail = self.capture.take().unwrap_or_default();
        let done = (|| {
            let mut f = new.file;
            f.write_all(&tail)?;
            // Publishes acknowledged since the snapshot are in the tail: it
            // must be on disk before the new log replaces the old one.
            f.sync_data()?;
            fs::rename(&new.tmp, &self.path)?;
            sync_dir(&self.path)
        })();
        if let Err(e) = done {
            // The old log is untouched and has every record, the tail too.
            let _ = fs::remove_file(&new.tmp);
            return Err(e);
        }
        self.reopen()?;
        self.size = new.len + tail.len() as u64;
        self.dirty = false;
        Ok(())
    }

    fn abort_rewrite(&mut self, tmp: &Path) {
        self.capture = None;
        let _ = fs::remove_file(tmp);
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn take_dirty(&mut self) -> Option<Arc<File>> {
        std::mem::take(&mut self.dirty).then(|| self.file.clone())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn file(&self) -> Option<Arc<File>> {
        Some(self.file.clone())
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

    fn frames(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            r.encode_framed(&mut out);
        }
        out
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

    /// A damaged record in the middle (a bad sector, a flipped bit) with
    /// intact records after it: every one of them is kept.
    #[test]
    fn a_damaged_record_in_the_middle_loses_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        let mut starts = Vec::new();
        for seq in 1..=6 {
            starts.push(store.size() as usize);
            store.append(&msg(seq)).unwrap();
        }
        drop(store);
        let mut bytes = fs::read(&path).unwrap();
        // The body of record 3 and the length field of record 4.
        for b in &mut bytes[starts[2] + FRAME_HEADER + 2..starts[3] + 2] {
            *b ^= 0x5a;
        }
        fs::write(&path, &bytes).unwrap();

        let parsed = parse(&bytes);
        assert_eq!(
            parsed.skipped,
            vec![Skipped {
                offset: starts[2],
                bytes: starts[4] - starts[2],
            }]
        );
        let (mut store, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1), msg(2), msg(5), msg(6)]);
        store.append(&msg(7)).unwrap();
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1), msg(2), msg(5), msg(6), msg(7)]);
    }

    #[test]
    fn a_damaged_record_and_a_torn_tail_together() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        store.append(&msg(1)).unwrap();
        let second = store.size() as usize;
        store.append(&msg(2)).unwrap();
        store.append(&msg(3)).unwrap();
        let torn = store.size();
        store.append(&msg(4)).unwrap();
        drop(store);
        let mut bytes = fs::read(&path).unwrap();
        bytes[second + FRAME_HEADER + 3] ^= 0xff;
        bytes.truncate(bytes.len() - 5);
        fs::write(&path, &bytes).unwrap();
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(1), msg(3)]);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            torn,
            "the torn tail is cut"
        );
    }

    #[test]
    fn records_appended_during_an_off_lock_rewrite_end_up_in_the_new_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        for seq in 1..=10 {
            store.append(&msg(seq)).unwrap();
        }
        let target = store.begin_rewrite().expect("a file store rewrites");
        assert!(store.begin_rewrite().is_none(), "one rewrite at a time");
        // Appended after the snapshot, before the new log is in place.
        store.append(&msg(11)).unwrap();
        let new = target.write(&frames(&[msg(9), msg(10)])).unwrap();
        store.append(&msg(12)).unwrap();
        store.finish_rewrite(new).unwrap();
        store.append(&msg(13)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), store.size());
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(9), msg(10), msg(11), msg(12), msg(13)]);
    }

    #[test]
    fn a_rewrite_replaces_the_log_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let (mut store, _) = FileStore::open(&path).unwrap();
        for seq in 1..=10 {
            store.append(&msg(seq)).unwrap();
        }
        store.rewrite(&frames(&[msg(9), msg(10)])).unwrap();
        store.append(&msg(11)).unwrap();
        assert!(!tmp_path(&path).exists());
        drop(store);
        let (_, recs) = FileStore::open(&path).unwrap();
        assert_eq!(recs, vec![msg(9), msg(10), msg(11)]);
    }
}
