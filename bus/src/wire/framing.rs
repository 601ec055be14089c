//! How a message goes out to a client: `MSG` or `HMSG`, encoded in place into
//! the outbound buffer.

#[cfg(test)]
use bytes::Bytes;
use bytes::{BufMut, BytesMut};

use super::{KEY_HEADER, REPLY_HEADER, STATUS_HEADER, SUBJECT_HEADER};
use crate::Message;

fn internal_header(name: &str) -> bool {
    name == REPLY_HEADER || name == STATUS_HEADER || name == SUBJECT_HEADER
}

/// The header lines of a message: the key first, then its own headers.
fn header_lines(m: &Message) -> impl Iterator<Item = (&str, &str)> {
    let key = m.key.as_deref().map(|k| (KEY_HEADER, k));
    let rest = m
        .headers
        .iter()
        .filter(|(n, _)| !internal_header(n))
        .map(|(n, v)| (n.as_str(), v.as_str()));
    key.into_iter().chain(rest)
}

/// How a message goes out as `MSG` or `HMSG`, decided before anything is
/// written so that it can be encoded straight into the outbound buffer.
pub(super) struct MsgFrame<'a> {
    subject: &'a str,
    reply: Option<&'a str>,
    /// `Some` for `HMSG`: the status of the `NATS/1.0` line, if any.
    header_block: Option<Option<u16>>,
}

impl<'a> MsgFrame<'a> {
    /// `None` for a status message to a client that cannot take headers.
    pub(super) fn of(m: &'a Message, headers: bool) -> Option<Self> {
        let status: Option<u16> = m.headers.get(STATUS_HEADER).and_then(|s| s.parse().ok());
        let user_headers = m.key.is_some() || m.headers.keys().any(|n| !internal_header(n));
        let with_headers = headers && (status.is_some() || user_headers);
        if status.is_some() && !with_headers {
            return None;
        }
        Some(Self {
            subject: m.headers.get(SUBJECT_HEADER).unwrap_or(&m.subject),
            reply: m.headers.get(REPLY_HEADER).map(String::as_str),
            header_block: with_headers.then_some(status),
        })
    }

    /// Appends the frame (after nats-server: no allocation but the buffer's).
    pub(super) fn encode(&self, out: &mut BytesMut, m: &Message, sid: &str) {
        let hdr_len = self.header_block.map(|status| {
            let first = b"NATS/1.0\r\n".len() + status.map_or(0, |c| 1 + decimal_len(c.into()));
            let lines: usize = header_lines(m)
                .map(|(n, v)| n.len() + 2 + v.len() + 2)
                .sum();
            first + lines + 2
        });
        out.reserve(
            64 + self.subject.len()
                + sid.len()
                + self.reply.map_or(0, str::len)
                + hdr_len.unwrap_or(0)
                + m.payload.len(),
        );
        out.put_slice(if hdr_len.is_some() { b"HMSG " } else { b"MSG " });
        out.put_slice(self.subject.as_bytes());
        out.put_u8(b' ');
        out.put_slice(sid.as_bytes());
        if let Some(reply) = self.reply {
            out.put_u8(b' ');
            out.put_slice(reply.as_bytes());
        }
        out.put_u8(b' ');
        if let Some(hdr_len) = hdr_len {
            put_decimal(out, hdr_len);
            out.put_u8(b' ');
            put_decimal(out, hdr_len + m.payload.len());
            out.put_slice(b"\r\n");
            let start = out.len();
            out.put_slice(b"NATS/1.0");
            if let Some(Some(code)) = self.header_block {
                out.put_u8(b' ');
                put_decimal(out, code.into());
            }
            out.put_slice(b"\r\n");
            for (name, value) in header_lines(m) {
                out.put_slice(name.as_bytes());
                out.put_slice(b": ");
                out.put_slice(value.as_bytes());
                out.put_slice(b"\r\n");
            }
            out.put_slice(b"\r\n");
            debug_assert_eq!(out.len() - start, hdr_len);
        } else {
            put_decimal(out, m.payload.len());
            out.put_slice(b"\r\n");
        }
        out.put_slice(&m.payload);
        out.put_slice(b"\r\n");
    }
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn put_decimal(out: &mut BytesMut, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// `MSG`/`HMSG` for a message; `None` for a status message to a client that
/// cannot take headers.
#[cfg(test)]
fn encode_msg(m: &Message, sid: &str, headers: bool) -> Option<Bytes> {
    let frame = MsgFrame::of(m, headers)?;
    let mut out = BytesMut::new();
    frame.encode(&mut out, m, sid);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::cmd::HeaderBlock;

    fn text(b: Option<Bytes>) -> Option<String> {
        b.map(|b| String::from_utf8(b.to_vec()).unwrap())
    }

    #[test]
    fn msg_frames_carry_subject_sid_reply_and_size() {
        let m = Message::new("orders.created", "hi");
        assert_eq!(
            text(encode_msg(&m, "7", true)).unwrap(),
            "MSG orders.created 7 2\r\nhi\r\n"
        );
        let m = m.with_header(REPLY_HEADER, "_INBOX.x");
        assert_eq!(
            text(encode_msg(&m, "7", false)).unwrap(),
            "MSG orders.created 7 _INBOX.x 2\r\nhi\r\n"
        );
        let m =
            Message::new("_INBOX.y", vec![b'x'; 12_345]).with_header(SUBJECT_HEADER, "orders.paid");
        let f = text(encode_msg(&m, "12", false)).unwrap();
        assert!(
            f.starts_with("MSG orders.paid 12 12345\r\nxxx"),
            "{}",
            &f[..30]
        );
        assert_eq!(f.len(), "MSG orders.paid 12 12345\r\n".len() + 12_345 + 2);
    }

    #[test]
    fn keys_headers_and_statuses_become_hmsg_for_clients_that_take_headers() {
        let m = Message::new("s", "p").with_key("k1").with_header("a", "b");
        assert_eq!(
            text(encode_msg(&m, "1", true)).unwrap(),
            "HMSG s 1 35 36\r\nNATS/1.0\r\nOrderly-Key: k1\r\na: b\r\n\r\np\r\n"
        );
        assert_eq!(
            text(encode_msg(&m, "1", false)).unwrap(),
            "MSG s 1 1\r\np\r\n"
        );
        let status = Message::new("_INBOX.z", Bytes::new()).with_header(STATUS_HEADER, "503");
        assert_eq!(
            text(encode_msg(&status, "2", true)).unwrap(),
            "HMSG _INBOX.z 2 16 16\r\nNATS/1.0 503\r\n\r\n\r\n"
        );
        assert_eq!(encode_msg(&status, "2", false), None);
    }

    /// The frame as it was built before it was encoded in place: a
    /// `HeaderBlock`, then `format!`.
    fn reference(m: &Message, sid: &str, headers: bool) -> Option<Bytes> {
        let reply = m.headers.get(REPLY_HEADER);
        let subject = m.headers.get(SUBJECT_HEADER).unwrap_or(&m.subject);
        let status = m.headers.get(STATUS_HEADER).and_then(|s| s.parse().ok());
        let mut block = HeaderBlock {
            status,
            headers: Vec::new(),
        };
        if let Some(key) = &m.key {
            block.headers.push((KEY_HEADER.into(), key.clone()));
        }
        for (name, value) in &m.headers {
            if !internal_header(name) {
                block.headers.push((name.clone(), value.clone()));
            }
        }
        let with_headers = headers && (block.status.is_some() || !block.headers.is_empty());
        if block.status.is_some() && !with_headers {
            return None;
        }
        let mut out = BytesMut::new();
        let mut hdr = BytesMut::new();
        out.put_slice(if with_headers { b"HMSG " } else { b"MSG " });
        out.put_slice(subject.as_bytes());
        out.put_u8(b' ');
        out.put_slice(sid.as_bytes());
        if let Some(reply) = reply {
            out.put_u8(b' ');
            out.put_slice(reply.as_bytes());
        }
        if with_headers {
            block.encode(&mut hdr);
            let total = hdr.len() + m.payload.len();
            out.put_slice(format!(" {} {total}\r\n", hdr.len()).as_bytes());
            out.put_slice(&hdr);
        } else {
            out.put_slice(format!(" {}\r\n", m.payload.len()).as_bytes());
        }
        out.put_slice(&m.payload);
        out.put_slice(b"\r\n");
        Some(out.freeze())
    }

    fn message() -> impl Strategy<Value = Message> {
        let name = prop_oneof![
            Just(REPLY_HEADER.to_string()),
            Just(STATUS_HEADER.to_string()),
            Just(SUBJECT_HEADER.to_string()),
            "[A-Za-z-]{1,12}",
        ];
        let value = prop_oneof![Just("503".to_string()), "[ -~]{0,20}"];
        (
            "[a-z]{1,8}(\\.[a-z]{1,8}){0,3}",
            proptest::option::of("[a-z0-9]{1,10}"),
            proptest::collection::btree_map(name, value, 0..4),
            proptest::collection::vec(any::<u8>(), 0..3000),
        )
            .prop_map(|(subject, key, headers, payload)| Message {
                subject,
                key,
                headers,
                payload: payload.into(),
            })
    }

    proptest! {
        #[test]
        fn frames_encoded_in_place_match_the_reference(
            m in message(),
            sid in "[0-9]{1,6}",
            headers in any::<bool>(),
        ) {
            prop_assert_eq!(encode_msg(&m, &sid, headers), reference(&m, &sid, headers));
        }
    }
}
