//! One file per client command, mini-redis style: each has `parse` (from the
//! parser's borrowed args), `apply` (hands the work to the client connection's
//! `process_*`), and `encode` (the bytes a client sends; used by tests and
//! tools). [`Command::from_op`] picks the command and rejects trailing args.

mod connect;
mod hpub;
mod ping;
mod pong;
#[path = "pub.rs"]
mod publish;
mod sub;
mod unsub;

pub use connect::Connect;
pub use hpub::{HPub, HeaderBlock};
pub use ping::Ping;
pub use pong::Pong;
pub use publish::Pub;
pub use sub::Sub;
pub use unsub::Unsub;

use super::parser::{Op, Verb, split_args};

/// Why a command could not be built from its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// Wrong number of args, bad numbers, bad JSON: a protocol violation.
    Malformed(&'static str),
    /// A verb only servers send (INFO, MSG, HMSG, +OK, -ERR).
    NotAClientOp,
}

#[derive(Debug)]
pub enum Command<'a> {
    Connect(Connect),
    Pub(Pub<'a>),
    HPub(HPub<'a>),
    Sub(Sub<'a>),
    Unsub(Unsub<'a>),
    Ping(Ping),
    Pong(Pong),
}

impl<'a> Command<'a> {
    pub fn from_op(op: Op<'a>) -> Result<Self, CmdError> {
        let mut args = Args::new(op.args);
        let cmd = match op.verb {
            // CONNECT's argument is JSON (with spaces): taken whole.
            Verb::Connect => return Connect::parse(op.args).map(Command::Connect),
            Verb::Pub => Command::Pub(Pub::parse(&mut args, op.payload)?),
            Verb::HPub => Command::HPub(HPub::parse(&mut args, op.headers, op.payload)?),
            Verb::Sub => Command::Sub(Sub::parse(&mut args)?),
            Verb::Unsub => Command::Unsub(Unsub::parse(&mut args)?),
            Verb::Ping => Command::Ping(Ping),
            Verb::Pong => Command::Pong(Pong),
            Verb::Info | Verb::Msg | Verb::HMsg | Verb::Ok | Verb::Err => {
                return Err(CmdError::NotAClientOp);
            }
        };
        args.finish()?;
        Ok(cmd)
    }
}

/// The whitespace-separated args of a control line, as `&str` tokens.
pub struct Args<'a> {
    tokens: Vec<&'a [u8]>,
    next: usize,
}

impl<'a> Args<'a> {
    fn new(args: &'a [u8]) -> Self {
        Self {
            tokens: split_args(args).collect(),
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len() - self.next
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn next_str(&mut self) -> Result<&'a str, CmdError> {
        let t = self
            .tokens
            .get(self.next)
            .ok_or(CmdError::Malformed("missing argument"))?;
        self.next += 1;
        std::str::from_utf8(t).map_err(|_| CmdError::Malformed("argument is not UTF-8"))
    }

    pub fn next_number(&mut self) -> Result<u64, CmdError> {
        let t = self.next_str()?;
        super::parser::parse_size(t.as_bytes())
            .map(|n| n as u64)
            .ok_or(CmdError::Malformed("not a number"))
    }

    /// Rejects arguments nobody consumed.
    pub fn finish(&self) -> Result<(), CmdError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CmdError::Malformed("trailing arguments"))
        }
    }
}
