//! The records of a stream log and their byte encoding.
//!
//! On disk each record is `[u32 length][u32 crc32 of body][body]` (little endian),
//! the body a kind byte followed by the kind's fields. Strings and byte strings
//! carry a `u32` length prefix. Decoding never panics: a short or malformed body
//! yields `None`, which the file store treats like a bad checksum.

use bytes::Bytes;

use crate::{Headers, Message};

/// Bytes in front of every body: length and checksum.
pub(crate) const FRAME_HEADER: usize = 8;

const CONFIG: u8 = 1;
const MSG: u8 = 2;
const GROUP: u8 = 3;
const DELIVERED: u8 = 4;
const ACK: u8 = 5;
const NACK: u8 = 6;
const NOTE: u8 = 7;
const DEAD: u8 = 8;
const DEAD_REMOVED: u8 = 9;
const SEEN: u8 = 10;
/// A dead letter with its reason and time; `DEAD` (without them) is still read.
const DEAD_WITH_REASON: u8 = 11;

/// A message as a stream keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredMsg {
    pub seq: u64,
    /// Wall-clock milliseconds since the Unix epoch, for `max_age`.
    pub ts_ms: u64,
    pub msg: Message,
}

/// A message that a group gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub stored: StoredMsg,
    pub deliveries: u32,
    pub notes: Vec<String>,
    /// Why the group gave up (empty in logs written before it was kept).
    pub reason: String,
    /// Wall-clock milliseconds when it was dead-lettered (0: not known).
    pub dead_at_ms: u64,
}

/// One entry of a stream log. Group records name the group by its index in the
/// stream, which the `Group` record fixes and compaction keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// Written first on every rewrite; `last_seq` keeps sequence numbers from
    /// being reused after every message was deleted and the log compacted.
    Config {
        subjects: Vec<String>,
        max_age_ms: u64,
        last_seq: u64,
    },
    Msg(StoredMsg),
    Group {
        idx: u32,
        name: String,
        filter: String,
    },
    Delivered {
        group: u32,
        seq: u64,
        count: u32,
    },
    Ack {
        group: u32,
        seq: u64,
    },
    /// Redeliver not before this wall-clock time, so a restart keeps the delay.
    Nack {
        group: u32,
        seq: u64,
        not_before_ms: u64,
    },
    /// Free text attached to a message for a group (the job queue's errors).
    Note {
        group: u32,
        seq: u64,
        text: String,
    },
    /// Carries the whole message: the stream may delete its copy afterwards.
    Dead {
        group: u32,
        letter: DeadLetter,
    },
    DeadRemoved {
        group: u32,
        seq: u64,
    },
    /// A deduplication id whose message may be gone already.
    Seen {
        id: String,
        ts_ms: u64,
    },
}

impl Record {
    /// Appends the framed record (header and body) to `out`.
    pub(crate) fn encode_framed(&self, out: &mut Vec<u8>) {
        framed(out, |out| self.encode_body(out));
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Record::Config {
                subjects,
                max_age_ms,
                last_seq,
            } => {
                out.push(CONFIG);
                put_u32(out, subjects.len() as u32);
                for s in subjects {
                    put_str(out, s);
                }
                put_u64(out, *max_age_ms);
                put_u64(out, *last_seq);
            }
            Record::Msg(m) => {
                out.push(MSG);
                put_msg(out, m);
            }
            Record::Group { idx, name, filter } => {
                out.push(GROUP);
                put_u32(out, *idx);
                put_str(out, name);
                put_str(out, filter);
            }
            Record::Delivered { group, seq, count } => {
                out.push(DELIVERED);
                put_u32(out, *group);
                put_u64(out, *seq);
                put_u32(out, *count);
            }
            Record::Ack { group, seq } => {
                out.push(ACK);
                put_u32(out, *group);
                put_u64(out, *seq);
            }
            Record::Nack {
                group,
                seq,
                not_before_ms,
            } => {
                out.push(NACK);
                put_u32(out, *group);
                put_u64(out, *seq);
                put_u64(out, *not_before_ms);
            }
            Record::Note { group, seq, text } => {
                out.push(NOTE);
                put_u32(out, *group);
                put_u64(out, *seq);
                put_str(out, text);
            }
            Record::Dead { group, letter } => {
                out.push(DEAD_WITH_REASON);
                put_u32(out, *group);
                put_u32(out, letter.deliveries);
                put_str(out, &letter.reason);
                put_u64(out, letter.dead_at_ms);
                put_u32(out, letter.notes.len() as u32);
                for n in &letter.notes {
                    put_str(out, n);
                }
                put_msg(out, &letter.stored);
            }
            Record::DeadRemoved { group, seq } => {
                out.push(DEAD_REMOVED);
                put_u32(out, *group);
                put_u64(out, *seq);
            }
            Record::Seen { id, ts_ms } => seen_body(out, id, *ts_ms),
        }
    }

    /// Decodes one body (without the frame header); `None` if it is malformed.
    pub(crate) fn decode_body(body: &[u8]) -> Option<Record> {
        let mut d = Dec { buf: body, pos: 0 };
        let rec = match d.u8()? {
            CONFIG => {
                let n = d.u32()?;
                let mut subjects = Vec::new();
                for _ in 0..n {
                    subjects.push(d.string()?);
                }
                Record::Config {
                    subjects,
                    max_age_ms: d.u64()?,
                    last_seq: d.u64()?,
                }
            }
            MSG => Record::Msg(d.msg()?),
            GROUP => Record::Group {
                idx: d.u32()?,
                name: d.string()?,
                filter: d.string()?,
            },
            DELIVERED => Record::Delivered {
                group: d.u32()?,
                seq: d.u64()?,
                count: d.u32()?,
            },
            ACK => Record::Ack {
                group: d.u32()?,
                seq: d.u64()?,
            },
            NACK => Record::Nack {
                group: d.u32()?,
                seq: d.u64()?,
                not_before_ms: d.u64()?,
            },
            NOTE => Record::Note {
                group: d.u32()?,
                seq: d.u64()?,
                text: d.string()?,
            },
            kind @ (DEAD | DEAD_WITH_REASON) => {
                let group = d.u32()?;
                let deliveries = d.u32()?;
                let (reason, dead_at_ms) = if kind == DEAD_WITH_REASON {
                    (d.string()?, d.u64()?)
                } else {
                    (String::new(), 0)
                };
                let n = d.u32()?;
                let mut notes = Vec::new();
                for _ in 0..n {
                    notes.push(d.string()?);
                }
                let stored = d.msg()?;
                Record::Dead {
                    group,
                    letter: DeadLetter {
                        stored,
                        deliveries,
                        notes,
                        reason,
                        dead_at_ms,
                    },
                }
            }
            DEAD_REMOVED => Record::DeadRemoved {
                group: d.u32()?,
                seq: d.u64()?,
            },
            SEEN => Record::Seen {
                id: d.string()?,
                ts_ms: d.u64()?,
            },
            _ => return None,
        };
        // Trailing bytes mean the writer and reader disagree: not a record we trust.
        (d.pos == body.len()).then_some(rec)
    }
}

/// Appends `[length][crc][body]`, the body written by `body`.
fn framed(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    body(out);
    let body = &out[start + FRAME_HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The framed `Seen` record of `id`, without building a [`Record`] (a
/// compaction writes every remembered id).
pub(crate) fn encode_seen_framed(id: &str, ts_ms: u64, out: &mut Vec<u8>) {
    framed(out, |out| seen_body(out, id, ts_ms));
}

fn seen_body(out: &mut Vec<u8>, id: &str, ts_ms: u64) {
    out.push(SEEN);
    put_str(out, id);
    put_u64(out, ts_ms);
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_msg(out: &mut Vec<u8>, m: &StoredMsg) {
    put_u64(out, m.seq);
    put_u64(out, m.ts_ms);
    put_str(out, &m.msg.subject);
    match &m.msg.key {
        Some(k) => {
            out.push(1);
            put_str(out, k);
        }
        None => out.push(0),
    }
    put_u32(out, m.msg.headers.len() as u32);
    for (k, v) in &m.msg.headers {
        put_str(out, k);
        put_str(out, v);
    }
    put_bytes(out, &m.msg.payload);
}

struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn msg(&mut self) -> Option<StoredMsg> {
        let seq = self.u64()?;
        let ts_ms = self.u64()?;
        let subject = self.string()?;
        let key = match self.u8()? {
            0 => None,
            1 => Some(self.string()?),
            _ => return None,
        };
        let n = self.u32()?;
        let mut headers = Headers::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            headers.insert(k, v);
        }
        let payload = Bytes::copy_from_slice(self.bytes()?);
        Some(StoredMsg {
            seq,
            ts_ms,
            msg: Message {
                subject,
                key,
                headers,
                payload,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_msg(seq: u64) -> StoredMsg {
        StoredMsg {
            seq,
            ts_ms: 1_700_000_000_000,
            msg: Message::new("orders.eu.created", &b"{\"id\":1}"[..])
                .with_key("order-1")
                .with_header("event-id", "e1"),
        }
    }

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Config {
                subjects: vec!["orders.>".into(), "new_order".into()],
                max_age_ms: 60_000,
                last_seq: 9,
            },
            Record::Msg(sample_msg(3)),
            Record::Group {
                idx: 2,
                name: "billing".into(),
                filter: "orders.*.created".into(),
            },
            Record::Delivered {
                group: 2,
                seq: 3,
                count: 4,
            },
            Record::Ack { group: 2, seq: 3 },
            Record::Nack {
                group: 1,
                seq: 3,
                not_before_ms: 77,
            },
            Record::Note {
                group: 1,
                seq: 3,
                text: "boom".into(),
            },
            Record::Dead {
                group: 1,
                letter: DeadLetter {
                    stored: sample_msg(5),
                    deliveries: 3,
                    notes: vec!["a".into(), "b".into()],
                    reason: "max deliveries reached".into(),
                    dead_at_ms: 1_700_000_000_123,
                },
            },
            Record::DeadRemoved { group: 1, seq: 5 },
            Record::Seen {
                id: "job-1".into(),
                ts_ms: 12,
            },
        ]
    }

    #[test]
    fn every_record_kind_survives_an_encode_decode_round_trip() {
        for rec in all_kinds() {
            let mut buf = Vec::new();
            rec.encode_framed(&mut buf);
            let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap());
            let body = &buf[FRAME_HEADER..];
            assert_eq!(len, body.len());
            assert_eq!(crc, crc32fast::hash(body));
            assert_eq!(Record::decode_body(body), Some(rec));
        }
    }

    #[test]
    fn a_dead_letter_written_without_a_reason_still_decodes() {
        let mut body = vec![DEAD];
        put_u32(&mut body, 1);
        put_u32(&mut body, 3);
        put_u32(&mut body, 0);
        put_msg(&mut body, &sample_msg(5));
        let Some(Record::Dead { group, letter }) = Record::decode_body(&body) else {
            panic!("not decoded");
        };
        assert_eq!((group, letter.deliveries), (1, 3));
        assert_eq!((letter.reason.as_str(), letter.dead_at_ms), ("", 0));
        assert_eq!(letter.stored, sample_msg(5));
    }

    #[test]
    fn a_cut_body_decodes_to_none_instead_of_panicking() {
        for rec in all_kinds() {
            let mut buf = Vec::new();
            rec.encode_framed(&mut buf);
            let body = &buf[FRAME_HEADER..];
            for cut in 0..body.len() {
                assert_eq!(
                    Record::decode_body(&body[..cut]),
                    None,
                    "{rec:?} cut at {cut}"
                );
            }
        }
    }
}
