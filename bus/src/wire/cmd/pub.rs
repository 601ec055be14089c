use bytes::{BufMut, BytesMut};

use super::super::session::{ClientConn, Flow};
use super::{Args, CmdError};

/// `PUB <subject> [reply-to] <#bytes>\r\n<payload>\r\n`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pub<'a> {
    /// The subject published to.
    pub subject: &'a str,
    /// Where answers go, for a request.
    pub reply: Option<&'a str>,
    /// The message body.
    pub payload: &'a [u8],
}

impl<'a> Pub<'a> {
    /// Reads `PUB <subject> [reply] <size>`; the parser cut the payload.
    pub fn parse(args: &mut Args<'a>, payload: &'a [u8]) -> Result<Self, CmdError> {
        let subject = args.next_str()?;
        let reply = match args.len() {
            2 => Some(args.next_str()?),
            1 => None,
            _ => return Err(CmdError::Malformed("PUB <subject> [reply-to] <size>")),
        };
        // The parser already checked the size against the payload.
        args.next_number()?;
        Ok(Self {
            subject,
            reply,
            payload,
        })
    }

    pub(crate) async fn apply(self, conn: &mut ClientConn) -> Flow {
        conn.process_pub(self.subject, self.reply, None, self.payload)
            .await
    }

    /// Appends the command as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"PUB ");
        out.put_slice(self.subject.as_bytes());
        if let Some(reply) = self.reply {
            out.put_u8(b' ');
            out.put_slice(reply.as_bytes());
        }
        out.put_slice(format!(" {}\r\n", self.payload.len()).as_bytes());
        out.put_slice(self.payload);
        out.put_slice(b"\r\n");
    }
}
