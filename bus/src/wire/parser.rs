//! The NATS client protocol tokenizer: an incremental, byte-level state
//! machine after nats-server's `parser.go`.
//!
//! The connection reads into one `BytesMut` and calls [`Parser::parse`] on it;
//! the parser remembers how far it has looked (its state and position), so a
//! control line or payload split over many reads is scanned once, not again
//! on every read. A complete operation comes back as an [`Op`] whose args and
//! payload borrow the buffer; the caller handles it, then advances the buffer
//! by [`Parsed::len`]. Nothing is copied: a split argument simply stays in the
//! buffer until its line is complete (the buffer is the scratch space).
//!
//! The control-line limit is checked while a line is still arriving, and a
//! payload is not scanned at all: the parser jumps over its declared size.

use std::fmt;

/// Longest control line (verb, args, CRLF) accepted; nats-server's default.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The verbs of the client protocol (client → server and server → client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `CONNECT`
    Connect,
    /// `PUB`
    Pub,
    /// `HPUB`
    HPub,
    /// `SUB`
    Sub,
    /// `UNSUB`
    Unsub,
    /// `PING`
    Ping,
    /// `PONG`
    Pong,
    /// `INFO` (server to client)
    Info,
    /// `MSG` (server to client)
    Msg,
    /// `HMSG` (server to client)
    HMsg,
    /// `+OK` (server to client)
    Ok,
    /// `-ERR` (server to client)
    Err,
}

impl Verb {
    fn from_bytes(op: &[u8]) -> Option<Self> {
        let mut upper = [0u8; 8];
        if op.len() > upper.len() {
            return None;
        }
        for (u, b) in upper.iter_mut().zip(op) {
            *u = b.to_ascii_uppercase();
        }
        Some(match &upper[..op.len()] {
            b"CONNECT" => Verb::Connect,
            b"PUB" => Verb::Pub,
            b"HPUB" => Verb::HPub,
            b"SUB" => Verb::Sub,
            b"UNSUB" => Verb::Unsub,
            b"PING" => Verb::Ping,
            b"PONG" => Verb::Pong,
            b"INFO" => Verb::Info,
            b"MSG" => Verb::Msg,
            b"HMSG" => Verb::HMsg,
            b"+OK" => Verb::Ok,
            b"-ERR" => Verb::Err,
            _ => return None,
        })
    }

    /// Whether only a server sends it. A client's `MSG`/`HMSG` is refused at
    /// its control line: its declared size is not bounded by `max_payload`,
    /// so waiting for its payload would let a client grow the read buffer
    /// without limit.
    fn server_only(self) -> bool {
        matches!(
            self,
            Verb::Info | Verb::Msg | Verb::HMsg | Verb::Ok | Verb::Err
        )
    }

    /// Whether a payload follows the control line.
    fn has_payload(self) -> bool {
        matches!(self, Verb::Pub | Verb::HPub | Verb::Msg | Verb::HMsg)
    }

    fn has_headers(self) -> bool {
        matches!(self, Verb::HPub | Verb::HMsg)
    }
}

/// One operation, borrowing the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// Which operation.
    pub verb: Verb,
    /// The control line after the verb, trimmed, without CRLF.
    pub args: &'a [u8],
    /// For HPUB/HMSG: the header block (`NATS/1.0\r\n…\r\n\r\n`).
    pub headers: &'a [u8],
    /// For PUB/HPUB/MSG/HMSG: the payload (without headers and CRLF).
    pub payload: &'a [u8],
}

/// A complete operation and how many bytes of the buffer it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The operation.
    pub op: Op<'a>,
    /// Bytes it took, to advance the buffer by.
    pub len: usize,
}

/// Why the input is not the protocol; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a verb of the protocol.
    UnknownOp,
    /// A verb only servers send (INFO, MSG, HMSG, +OK, -ERR), refused before
    /// any payload it declares is read.
    ServerOnly,
    /// The control line grew past the limit (checked before it was complete).
    ControlLineTooLong,
    /// A PUB/HPUB declared more than `max_payload` bytes.
    PayloadTooLarge,
    /// The control line's sizes are missing or not numbers, or a payload does
    /// not end in CRLF.
    Malformed(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownOp => f.write_str("unknown protocol operation"),
            ParseError::ServerOnly => f.write_str("operation only a server sends"),
            ParseError::ControlLineTooLong => f.write_str("maximum control line exceeded"),
            ParseError::PayloadTooLarge => f.write_str("maximum payload violation"),
            ParseError::Malformed(why) => write!(f, "malformed operation: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Where the parser is in the current operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first byte of a verb (leading CR/LF are skipped here).
    OpStart,
    /// In the verb; `0..pos` of the line is the verb so far.
    Verb,
    /// In the args, looking for CR or LF.
    Args,
    /// Saw CR, need LF.
    ArgsCr,
    /// Control line complete (`line_end` = bytes up to and including LF);
    /// waiting for `need` bytes in total (payload and its CRLF).
    /// The verb and header size are kept from the line, not parsed again.
    Payload {
        line_end: usize,
        need: usize,
        verb: Verb,
        hdr: usize,
    },
}

/// The tokenizer of one connection. Feed it the connection's whole unread
/// buffer each time; it picks up where it stopped.
#[derive(Debug, Clone)]
pub struct Parser {
    state: State,
    /// Bytes of the buffer already examined for the current operation.
    pos: usize,
    /// Leading CR/LF before the verb (tolerated, like nats-server).
    skip: usize,
    verb_end: usize,
    max_control_line: usize,
    max_payload: usize,
}

impl Parser {
    /// A parser with nats-server's control-line limit.
    pub fn new(max_payload: usize) -> Self {
        Self::with_limits(MAX_CONTROL_LINE, max_payload)
    }

    /// A parser with both limits given.
    pub fn with_limits(max_control_line: usize, max_payload: usize) -> Self {
        Self {
            state: State::OpStart,
            pos: 0,
            skip: 0,
            verb_end: 0,
            max_control_line,
            max_payload,
        }
    }

    /// The next complete operation at the start of `buf`, or `Ok(None)` if it
    /// is not all there yet (read more and call again with the grown buffer).
    /// After `Ok(Some(p))`, drop `p.len` bytes from the front of the buffer.
    ///
    /// An error leaves the parser unusable: the connection is to be closed.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<Parsed<'a>>, ParseError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            match self.state {
                State::OpStart => {
                    if b == b'\r' || b == b'\n' {
                        self.skip += 1;
                        if self.skip > self.max_control_line {
                            return Err(ParseError::ControlLineTooLong);
                        }
                    } else if b == b' ' || b == b'\t' {
                        return Err(ParseError::UnknownOp);
                    } else {
                        self.state = State::Verb;
                    }
                    self.pos += 1;
                    continue;
                }
                State::Verb => match b {
                    b' ' | b'\t' => {
                        self.verb_end = self.pos;
                        self.state = State::Args;
                    }
                    b'\r' | b'\n' => {
                        self.verb_end = self.pos;
                        self.state = if b == b'\r' {
                            State::ArgsCr
                        } else {
                            return self.line_done(buf, self.pos + 1);
                        };
                    }
                    _ if self.pos - self.skip >= 8 => return Err(ParseError::UnknownOp),
                    _ => {}
                },
                State::Args => {
                    // The rest of the line in one scan, not byte by byte
                    // through this loop. A byte at `skip + max` while still
                    // in the line is over the limit, whatever it is.
                    let end = buf.len().min(self.skip + self.max_control_line);
                    match buf[self.pos..end]
                        .iter()
                        .position(|&c| c == b'\r' || c == b'\n')
                    {
                        Some(i) if buf[self.pos + i] == b'\n' => {
                            return self.line_done(buf, self.pos + i + 1);
                        }
                        Some(i) => {
                            self.state = State::ArgsCr;
                            self.pos += i + 1;
                        }
                        None if end < buf.len() => return Err(ParseError::ControlLineTooLong),
                        None => self.pos = end,
                    }
                    continue;
                }
                State::ArgsCr => {
                    if b != b'\n' {
                        return Err(ParseError::Malformed("CR without LF"));
                    }
                    return self.line_done(buf, self.pos + 1);
                }
                State::Payload {
                    line_end,
                    need,
                    verb,
                    hdr,
                } => {
                    // Nothing to scan: wait for the declared size.
                    if buf.len() < need {
                        self.pos = buf.len();
                        return Ok(None);
                    }
                    return self.payload_done(buf, line_end, need, verb, hdr).map(Some);
                }
            }
            self.pos += 1;
            if self.pos - self.skip > self.max_control_line {
                return Err(ParseError::ControlLineTooLong);
            }
        }
        if let State::Payload {
            line_end,
            need,
            verb,
            hdr,
        } = self.state
            && buf.len() >= need
        {
            return self.payload_done(buf, line_end, need, verb, hdr).map(Some);
        }
        Ok(None)
    }

    /// The control line ends at `line_end` (after its LF).
    fn line_done<'a>(
        &mut self,
        buf: &'a [u8],
        line_end: usize,
    ) -> Result<Option<Parsed<'a>>, ParseError> {
        if line_end - self.skip > self.max_control_line {
            return Err(ParseError::ControlLineTooLong);
        }
        let verb = Verb::from_bytes(&buf[self.skip..self.verb_end]).ok_or(ParseError::UnknownOp)?;
        if verb.server_only() {
            return Err(ParseError::ServerOnly);
        }
        let args = trim(&buf[self.verb_end..line_end]);
        if !verb.has_payload() {
            let op = Op {
                verb,
                args,
                headers: &[],
                payload: &[],
            };
            return Ok(Some(self.finish(op, line_end)));
        }
        let (hdr, total) = sizes(verb, args)?;
        // Every verb left with a payload is a client's PUB/HPUB: the buffer
        // never has to hold more than `max_payload` of it.
        if total > self.max_payload {
            return Err(ParseError::PayloadTooLarge);
        }
        debug_assert!(hdr <= total);
        let need = line_end + total + 2;
        self.state = State::Payload {
            line_end,
            need,
            verb,
            hdr,
        };
        self.pos = line_end;
        if buf.len() < need {
            self.pos = buf.len();
            return Ok(None);
        }
        self.payload_done(buf, line_end, need, verb, hdr).map(Some)
    }

    fn payload_done<'a>(
        &mut self,
        buf: &'a [u8],
        line_end: usize,
        need: usize,
        verb: Verb,
        hdr: usize,
    ) -> Result<Parsed<'a>, ParseError> {
        if &buf[need - 2..need] != b"\r\n" {
            return Err(ParseError::Malformed("payload does not end with CRLF"));
        }
        let args = trim(&buf[self.verb_end..line_end]);
        let body = &buf[line_end..need - 2];
        let (headers, payload) = body.split_at(hdr);
        let op = Op {
            verb,
            args,
            headers,
            payload,
        };
        Ok(self.finish(op, need))
    }

    fn finish<'a>(&mut self, op: Op<'a>, len: usize) -> Parsed<'a> {
        self.state = State::OpStart;
        self.pos = 0;
        self.skip = 0;
        self.verb_end = 0;
        Parsed { op, len }
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && matches!(first, b' ' | b'\t')
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && matches!(last, b' ' | b'\t' | b'\r' | b'\n')
    {
        s = rest;
    }
    s
}

/// Splits args on spaces and tabs, skipping empty tokens.
pub fn split_args(args: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    args.split(|b| *b == b' ' || *b == b'\t')
        .filter(|t| !t.is_empty())
}

/// A decimal size: digits only, no sign, fits in usize.
pub fn parse_size(token: &[u8]) -> Option<usize> {
    if token.is_empty() || token.len() > 19 {
        return None;
    }
    token.iter().try_fold(0usize, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
        } else {
            None
        }
    })
}

/// (header size, total size) from the last args of a payload-carrying verb.
fn sizes(verb: Verb, args: &[u8]) -> Result<(usize, usize), ParseError> {
    let mut tokens = split_args(args).rev();
    let total = tokens
        .next()
        .and_then(parse_size)
        .ok_or(ParseError::Malformed("missing or bad size"))?;
    if !verb.has_headers() {
        return Ok((0, total));
    }
    let hdr = tokens
        .next()
        .and_then(parse_size)
        .ok_or(ParseError::Malformed("missing or bad header size"))?;
    if hdr > total {
        return Err(ParseError::Malformed("header size exceeds total size"));
    }
    Ok((hdr, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation copied out of the buffer: verb, args, headers, payload.
    type Owned = (Verb, Vec<u8>, Vec<u8>, Vec<u8>);

    /// Every operation in `input`, fed in chunks of the given sizes (cycled);
    /// the buffer is advanced like the connection does.
    fn feed(input: &[u8], chunks: &[usize]) -> Result<Vec<Owned>, ParseError> {
        let mut parser = Parser::new(1024);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < input.len() {
            let n = chunks[i % chunks.len()].max(1).min(input.len() - at);
            i += 1;
            buf.extend_from_slice(&input[at..at + n]);
            at += n;
            while let Some(p) = parser.parse(&buf)? {
                out.push((
                    p.op.verb,
                    p.op.args.to_vec(),
                    p.op.headers.to_vec(),
                    p.op.payload.to_vec(),
                ));
                buf.drain(..p.len);
            }
        }
        assert!(
            buf.is_empty(),
            "unparsed rest {:?}",
            String::from_utf8_lossy(&buf)
        );
        Ok(out)
    }

    const STREAM: &[u8] = b"CONNECT {\"verbose\":false}\r\nPING\r\npub foo.bar 5\r\nhello\r\n\
HPUB a.b INBOX.1 18 23\r\nNATS/1.0\r\nk: v\r\n\r\nhello\r\nSUB foo.* q 1\r\n\
UNSUB 1 10\r\nPONG\r\nPUB empty 0\r\n\r\n\r\nPING\n";

    #[test]
    fn a_whole_stream_parses_into_its_operations() {
        let ops = feed(STREAM, &[STREAM.len()]).unwrap();
        let verbs: Vec<Verb> = ops.iter().map(|o| o.0).collect();
        use Verb::*;
        assert_eq!(
            verbs,
            vec![Connect, Ping, Pub, HPub, Sub, Unsub, Pong, Pub, Ping]
        );
        assert_eq!(ops[2].1, b"foo.bar 5");
        assert_eq!(ops[2].3, b"hello");
        assert_eq!(ops[3].2, b"NATS/1.0\r\nk: v\r\n\r\n");
        assert_eq!(ops[3].3, b"hello");
        assert_eq!(ops[7].3, b"");
    }

    #[test]
    fn one_byte_at_a_time_and_random_chunks_give_the_same_operations() {
        let whole = feed(STREAM, &[STREAM.len()]).unwrap();
        assert_eq!(feed(STREAM, &[1]).unwrap(), whole);
        // A fixed pseudo-random sequence of chunk sizes (reproducible).
        let mut x: u32 = 12345;
        for _ in 0..50 {
            let chunks: Vec<usize> = (0..16)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as usize % 23 + 1
                })
                .collect();
            assert_eq!(feed(STREAM, &chunks).unwrap(), whole, "chunks {chunks:?}");
        }
    }

    #[test]
    fn a_split_line_is_not_rescanned_and_its_limit_holds_before_the_line_ends() {
        let mut parser = Parser::with_limits(16, 1024);
        let mut buf = b"SUB a.very.long.sub".to_vec();
        assert_eq!(parser.parse(&buf[..10]), Ok(None));
        assert_eq!(parser.parse(&buf), Err(ParseError::ControlLineTooLong));
        buf.clear();
    }

    #[test]
    fn the_control_line_limit_counts_the_crlf_and_holds_exactly_whole_or_split() {
        const MAX: usize = 16;
        // `SUB a <sid>\r\n` of every length around the limit, after 0–2 blank lines.
        for lead in 0..3 {
            for line_len in 8..=MAX + 3 {
                let sid = "1".repeat(line_len - "SUB a \r\n".len());
                let input = format!("{}SUB a {sid}\r\n", "\r\n".repeat(lead));
                let want_ok = line_len <= MAX;
                let whole = Parser::with_limits(MAX, 1024).parse(input.as_bytes());
                let mut parser = Parser::with_limits(MAX, 1024);
                let mut split = Ok(None);
                for end in 1..=input.len() {
                    split = parser.parse(&input.as_bytes()[..end]);
                    if !matches!(split, Ok(None)) {
                        break;
                    }
                }
                for (how, got) in [("whole", whole), ("split", split)] {
                    match got {
                        Ok(Some(p)) => {
                            assert!(want_ok, "{how} {line_len}: accepted");
                            assert_eq!(p.len, input.len(), "{how} {line_len}");
                        }
                        Err(ParseError::ControlLineTooLong) => {
                            assert!(!want_ok, "{how} {line_len}: refused");
                        }
                        other => panic!("{how} {line_len}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"FOO bar\r\n", ParseError::UnknownOp),
            (b"PUBX a 1\r\nx\r\n", ParseError::UnknownOp),
            (b" PUB a 1\r\n", ParseError::UnknownOp),
            (b"PUB a\r\n", ParseError::Malformed("missing or bad size")),
            (
                b"PUB a -1\r\n",
                ParseError::Malformed("missing or bad size"),
            ),
            (b"PUB a 2000\r\n", ParseError::PayloadTooLarge),
            (
                b"PUB a 3\r\nabcd\r\n",
                ParseError::Malformed("payload does not end with CRLF"),
            ),
            (
                b"HPUB a 10 5\r\n",
                ParseError::Malformed("header size exceeds total size"),
            ),
            (b"PING\rX", ParseError::Malformed("CR without LF")),
            (b"VERYLONGVERB\r\n", ParseError::UnknownOp),
            // Server-only verbs are refused at the line, whatever size they
            // declare: no payload is waited for.
            (b"MSG a 1 9000000000000000000\r\n", ParseError::ServerOnly),
            (
                b"HMSG a 1 0 9000000000000000000\r\n",
                ParseError::ServerOnly,
            ),
            (b"INFO {}\r\n", ParseError::ServerOnly),
            (b"+OK\r\n", ParseError::ServerOnly),
            (b"HPUB a 0 2000\r\n", ParseError::PayloadTooLarge),
            (
                b"PUB a 99999999999999999999\r\n",
                ParseError::Malformed("missing or bad size"),
            ),
        ];
        for (input, want) in cases {
            let mut parser = Parser::new(1024);
            assert_eq!(
                parser.parse(input).err().as_ref(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = [b"SUB ".as_slice(), &[b'a'; MAX_CONTROL_LINE]].concat();
        assert_eq!(
            Parser::new(1024).parse(&long),
            Err(ParseError::ControlLineTooLong)
        );
    }

    #[test]
    fn sizes_parse_strictly() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"1048576"), Some(1_048_576));
        for bad in [&b""[..], b"-1", b"+1", b"1a", b"99999999999999999999"] {
            assert_eq!(parse_size(bad), None);
        }
    }
}
