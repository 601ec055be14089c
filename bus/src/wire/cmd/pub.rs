use bytes::{BufMut, BytesMut};

use super::super::session::{ClientConn, Flow};
use super::{Args, CmdError};

/// `PUB <subject> [reply-to] <#bytes>\r\n<payload>\r\n`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pub<'a> {
    pub subject: &'a str,
    pub reply: Option<&'a str>,
    pub payload: &'a [u8],
}

impl<'a> Pub<'a> {
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

    pub async fn apply(self, conn: &mut ClientConn) -> Flow {
        conn.process_pub(self.subject, self.reply, None, self.payload)
            .await
    }

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
