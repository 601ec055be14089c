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

use super::parser::{Op, Verb};

/// Why a command could not be built from its operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// Wrong number of args, bad numbers, bad JSON: a protocol violation.
    Malformed(&'static str),
    /// A verb only servers send (INFO, MSG, HMSG, +OK, -ERR).
    NotAClientOp,
}

/// A client command, borrowing the read buffer where it can.
#[derive(Debug)]
pub enum Command<'a> {
    /// `CONNECT`
    Connect(Connect),
    /// `PUB`
    Pub(Pub<'a>),
    /// `HPUB`
    HPub(HPub<'a>),
    /// `SUB`
    Sub(Sub<'a>),
    /// `UNSUB`
    Unsub(Unsub<'a>),
    /// `PING`
    Ping(Ping),
    /// `PONG`
    Pong(Pong),
}

impl<'a> Command<'a> {
    /// The command of a parsed operation; trailing args are refused.
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

/// No command takes more args than this (HPUB: four); more only need counting.
const MAX_ARGS: usize = 6;

/// The whitespace-separated args of a control line, as `&str` tokens.
pub struct Args<'a> {
    /// The first [`MAX_ARGS`] tokens (kept on the stack: one per publish).
    tokens: [&'a [u8]; MAX_ARGS],
    count: usize,
    next: usize,
}

impl<'a> Args<'a> {
    fn new(args: &'a [u8]) -> Self {
        // `split_args` by hand: this runs once per publish.
        let blank = |b: u8| b == b' ' || b == b'\t';
        let mut tokens: [&'a [u8]; MAX_ARGS] = [&[]; MAX_ARGS];
        let mut count = 0;
        let mut i = 0;
        while i < args.len() {
            if blank(args[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < args.len() && !blank(args[i]) {
                i += 1;
            }
            if let Some(slot) = tokens.get_mut(count) {
                *slot = &args[start..i];
            }
            count += 1;
        }
        Self {
            tokens,
            count,
            next: 0,
        }
    }

    /// Arguments not consumed yet.
    pub fn len(&self) -> usize {
        self.count - self.next
    }

    /// Whether every argument was consumed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next argument as text.
    pub fn next_str(&mut self) -> Result<&'a str, CmdError> {
        let t = self
            .tokens
            .get(self.next)
            .filter(|_| self.next < self.count)
            .ok_or(CmdError::Malformed("missing argument"))?;
        self.next += 1;
        std::str::from_utf8(t).map_err(|_| CmdError::Malformed("argument is not UTF-8"))
    }

    /// The next argument as a decimal number.
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::parser::split_args;

    proptest! {
        #[test]
        fn args_are_the_tokens_split_args_gives(line in "[ \ta-c1]{0,40}") {
            let want: Vec<&[u8]> = split_args(line.as_bytes()).collect();
            let mut args = Args::new(line.as_bytes());
            prop_assert_eq!(args.len(), want.len());
            for t in want.iter().take(MAX_ARGS) {
                prop_assert_eq!(args.next_str().unwrap().as_bytes(), *t);
            }
            if want.len() <= MAX_ARGS {
                prop_assert!(args.finish().is_ok());
                prop_assert!(args.next_str().is_err());
            } else {
                prop_assert!(args.finish().is_err());
            }
        }
    }
}
