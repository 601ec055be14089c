use bytes::{BufMut, BytesMut};

use super::super::session::{ClientConn, Flow};
use super::{Args, CmdError};

/// `HPUB <subject> [reply-to] <#header bytes> <#total bytes>\r\n<headers><payload>\r\n`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HPub<'a> {
    /// The subject published to.
    pub subject: &'a str,
    /// Where answers go, for a request.
    pub reply: Option<&'a str>,
    /// The raw block, `NATS/1.0[ status]\r\n(name: value\r\n)*\r\n`.
    pub headers: &'a [u8],
    /// The message body, after the header block.
    pub payload: &'a [u8],
}

impl<'a> HPub<'a> {
    /// Reads `HPUB <subject> [reply] <hdr size> <total size>` and its blocks.
    pub fn parse(
        args: &mut Args<'a>,
        headers: &'a [u8],
        payload: &'a [u8],
    ) -> Result<Self, CmdError> {
        let subject = args.next_str()?;
        let reply = match args.len() {
            3 => Some(args.next_str()?),
            2 => None,
            _ => {
                return Err(CmdError::Malformed(
                    "HPUB <subject> [reply-to] <hdr> <size>",
                ));
            }
        };
        args.next_number()?;
        args.next_number()?;
        Ok(Self {
            subject,
            reply,
            headers,
            payload,
        })
    }

    pub(crate) async fn apply(self, conn: &mut ClientConn) -> Flow {
        let block = match HeaderBlock::parse(self.headers) {
            Ok(b) => b,
            Err(e) => return conn.protocol_violation(e),
        };
        conn.process_pub(self.subject, self.reply, Some(block), self.payload)
            .await
    }

    /// Appends the command as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"HPUB ");
        out.put_slice(self.subject.as_bytes());
        if let Some(reply) = self.reply {
            out.put_u8(b' ');
            out.put_slice(reply.as_bytes());
        }
        let total = self.headers.len() + self.payload.len();
        out.put_slice(format!(" {} {total}\r\n", self.headers.len()).as_bytes());
        out.put_slice(self.headers);
        out.put_slice(self.payload);
        out.put_slice(b"\r\n");
    }
}

/// A parsed header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    /// `NATS/1.0 503` → 503.
    pub status: Option<u16>,
    /// Name and value of each header line, in order.
    pub headers: Vec<(String, String)>,
}

impl HeaderBlock {
    /// Reads `NATS/1.0[ status]\r\n`, header lines and the blank line.
    pub fn parse(block: &[u8]) -> Result<Self, CmdError> {
        let text =
            std::str::from_utf8(block).map_err(|_| CmdError::Malformed("headers are not UTF-8"))?;
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default();
        let rest = first
            .strip_prefix("NATS/1.0")
            .ok_or(CmdError::Malformed("headers must start with NATS/1.0"))?;
        let status = match rest.split_whitespace().next() {
            None => None,
            Some(code) => Some(
                code.parse()
                    .map_err(|_| CmdError::Malformed("bad status code"))?,
            ),
        };
        let mut headers = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or(CmdError::Malformed("header line without ':'"))?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(CmdError::Malformed("bad header name"));
            }
            headers.push((name.to_string(), value.trim_start().to_string()));
        }
        Ok(Self { status, headers })
    }

    /// Appends the block as it travels.
    pub fn encode(&self, out: &mut BytesMut) {
        match self.status {
            Some(code) => out.put_slice(format!("NATS/1.0 {code}\r\n").as_bytes()),
            None => out.put_slice(b"NATS/1.0\r\n"),
        }
        for (name, value) in &self.headers {
            out.put_slice(name.as_bytes());
            out.put_slice(b": ");
            out.put_slice(value.as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(b"\r\n");
    }
}
