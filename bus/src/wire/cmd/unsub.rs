use bytes::{BufMut, BytesMut};

use super::super::session::{ClientConn, Flow};
use super::{Args, CmdError};

/// `UNSUB <sid> [max_msgs]`: with a max, the subscription ends after that
/// many messages in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsub<'a> {
    /// The subscription to end.
    pub sid: &'a str,
    /// End it only after this many messages in all.
    pub max: Option<u64>,
}

impl<'a> Unsub<'a> {
    /// Reads `UNSUB <sid> [max]`.
    pub fn parse(args: &mut Args<'a>) -> Result<Self, CmdError> {
        let sid = args.next_str()?;
        let max = if args.is_empty() {
            None
        } else {
            Some(args.next_number()?)
        };
        Ok(Self { sid, max })
    }

    pub(crate) fn apply(self, conn: &mut ClientConn) -> Flow {
        conn.process_unsub(self.sid, self.max)
    }

    /// Appends the command as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"UNSUB ");
        out.put_slice(self.sid.as_bytes());
        if let Some(max) = self.max {
            out.put_slice(format!(" {max}").as_bytes());
        }
        out.put_slice(b"\r\n");
    }
}
