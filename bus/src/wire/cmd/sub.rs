use bytes::{BufMut, BytesMut};

use super::super::session::{ClientConn, Flow};
use super::{Args, CmdError};

/// `SUB <subject> [queue group] <sid>`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sub<'a> {
    /// The subject (wildcards allowed).
    pub subject: &'a str,
    /// The queue group, if any.
    pub queue: Option<&'a str>,
    /// The client's id for this subscription.
    pub sid: &'a str,
}

impl<'a> Sub<'a> {
    /// Reads `SUB <subject> [queue] <sid>`.
    pub fn parse(args: &mut Args<'a>) -> Result<Self, CmdError> {
        let (subject, queue) = match args.len() {
            2 => (args.next_str()?, None),
            3 => (args.next_str()?, Some(args.next_str()?)),
            _ => return Err(CmdError::Malformed("SUB <subject> [queue] <sid>")),
        };
        Ok(Self {
            subject,
            queue,
            sid: args.next_str()?,
        })
    }

    pub(crate) async fn apply(self, conn: &mut ClientConn) -> Flow {
        conn.process_sub(self.subject, self.queue, self.sid).await
    }

    /// Appends the command as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"SUB ");
        out.put_slice(self.subject.as_bytes());
        if let Some(q) = self.queue {
            out.put_u8(b' ');
            out.put_slice(q.as_bytes());
        }
        out.put_u8(b' ');
        out.put_slice(self.sid.as_bytes());
        out.put_slice(b"\r\n");
    }
}
