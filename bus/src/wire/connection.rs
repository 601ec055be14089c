//! One client connection: the read loop (parse → command → `process_*`), the
//! client's outbound buffer and its write task, and the client's subscriptions.
//!
//! Reading is mini-redis style: one `BytesMut`, parse what is complete, then
//! `advance`; an incomplete operation just waits for the next read.
//!
//! Writing, after nats-server: a subscription is a [`Sink`] in the broker's
//! core, so a publisher's read loop encodes each `MSG` straight into the
//! subscriber's outbound buffer; once it has handled everything it read, it
//! writes each buffer it filled to its socket itself if nobody is writing it
//! and the socket takes it, and otherwise leaves it to that client's write
//! task. A publisher never waits for a slow reader: a client whose buffer is
//! over its byte limit is a slow consumer and is disconnected, nobody else stalls.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, broadcast};

use super::cmd::{CmdError, Command, Connect, HeaderBlock};
use super::jetstream::JetStream;
use super::parser::{ParseError, Parser};
use super::{KEY_HEADER, REPLY_HEADER, STATUS_HEADER, SUBJECT_HEADER, ServerConfig};
use crate::embedded::{CoreGuard, EmbeddedBroker, Offer, Pending, Sink};
use crate::subject::{validate_filter, validate_literal};
use crate::{BusError, Message};

/// On shutdown a client's input is served until it is this long idle ...
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// ... or for this long at most.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// Reads start this large and double while they fill the buffer ...
const READ_MIN: usize = 4 * 1024;
/// ... up to this.
const READ_MAX: usize = 64 * 1024;
/// A drained outbound buffer larger than this is freed, not kept for reuse.
const KEEP_BUFFER: usize = 1024 * 1024;
/// An inline writer hands over to the write task after this many buffers.
const INLINE_ROUNDS: usize = 2;

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// Who is writing a client's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Idle,
    /// A read loop, with `try_write`, until the socket would block.
    Inline,
    /// The client's write task.
    Task,
}

struct OutState {
    /// Frames queued and not yet taken by a writer.
    buf: BytesMut,
    /// An empty buffer, swapped in when a writer takes `buf`.
    spare: BytesMut,
    /// Bytes a writer has taken and not yet written.
    in_flight: usize,
    writer: Writer,
    /// Takes no more frames: the connection is ending or its socket failed.
    closed: bool,
}

impl OutState {
    fn take(&mut self) -> BytesMut {
        let batch = std::mem::replace(&mut self.buf, std::mem::take(&mut self.spare));
        self.in_flight = batch.len();
        batch
    }

    /// A writer is done with `batch` (all written).
    fn recycle(&mut self, mut batch: BytesMut) {
        self.in_flight = 0;
        batch.clear();
        if batch.capacity() <= KEEP_BUFFER && batch.capacity() > self.spare.capacity() {
            self.spare = batch;
        }
    }

    /// The unwritten rest of a batch goes back in front of what came since.
    fn unshift(&mut self, mut rest: BytesMut) {
        self.in_flight = 0;
        rest.extend_from_slice(&self.buf);
        let old = std::mem::replace(&mut self.buf, rest);
        self.recycle(old);
    }
}

struct OutShared {
    state: Mutex<OutState>,
    socket: OwnedWriteHalf,
    /// Wakes the write task.
    wake: Notify,
    /// Wakes the read loop: the client is a slow consumer.
    kill: Notify,
    slow: AtomicBool,
    max_pending: usize,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Slow,
    Closed,
}

/// The sending side of a client: one buffer, bounded in bytes, never waits.
#[derive(Clone)]
pub(crate) struct Outbound(Arc<OutShared>);

impl Outbound {
    fn new(socket: OwnedWriteHalf, max_pending: usize) -> Self {
        Self(Arc::new(OutShared {
            state: Mutex::new(OutState {
                buf: BytesMut::with_capacity(READ_MIN),
                spare: BytesMut::with_capacity(READ_MIN),
                in_flight: 0,
                writer: Writer::Idle,
                closed: false,
            }),
            socket,
            wake: Notify::new(),
            kill: Notify::new(),
            slow: AtomicBool::new(false),
            max_pending,
        }))
    }

    fn state(&self) -> MutexGuard<'_, OutState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends what `encode` writes; refused once the client is a slow
    /// consumer (this frame would take it over its limit) or closed.
    fn push(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), Refused> {
        if self.0.slow.load(Ordering::Acquire) {
            return Err(Refused::Slow);
        }
        let mut st = self.state();
        if st.closed {
            return Err(Refused::Closed);
        }
        let before = st.buf.len();
        encode(&mut st.buf);
        if st.buf.len() + st.in_flight > self.0.max_pending {
            st.buf.truncate(before);
            drop(st);
            self.mark_slow();
            return Err(Refused::Slow);
        }
        Ok(())
    }

    fn mark_slow(&self) {
        if !self.0.slow.swap(true, Ordering::AcqRel) {
            self.0.kill.notify_one();
        }
    }

    /// Gets the queued frames moving: with `inline`, writes them here and now
    /// as far as the socket takes them; otherwise wakes the write task.
    /// Nothing to do while someone else is writing: they write these too.
    fn flush(&self, inline: bool) {
        let mut st = self.state();
        if st.writer != Writer::Idle || st.buf.is_empty() {
            return;
        }
        if !inline {
            drop(st);
            self.0.wake.notify_one();
            return;
        }
        st.writer = Writer::Inline;
        let mut batch = st.take();
        drop(st);
        let mut rounds = 1;
        loop {
            match self.0.socket.try_write(&batch) {
                Ok(0) => return self.fail(),
                Ok(n) => {
                    batch.advance(n);
                    if !batch.is_empty() {
                        continue;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut st = self.state();
                    st.unshift(batch);
                    st.writer = Writer::Task;
                    drop(st);
                    self.0.wake.notify_one();
                    return;
                }
                Err(_) => return self.fail(),
            }
            let mut st = self.state();
            st.recycle(batch);
            if st.buf.is_empty() {
                st.writer = Writer::Idle;
                let closed = st.closed;
                drop(st);
                if closed {
                    // The write task may be waiting to finish.
                    self.0.wake.notify_one();
                }
                return;
            }
            if rounds >= INLINE_ROUNDS {
                // Others keep this client busy: not our job any more.
                st.writer = Writer::Task;
                drop(st);
                self.0.wake.notify_one();
                return;
            }
            rounds += 1;
            batch = st.take();
        }
    }

    /// The socket failed: nothing more goes out.
    fn fail(&self) {
        let mut st = self.state();
        st.closed = true;
        st.buf.clear();
        st.in_flight = 0;
        st.writer = Writer::Idle;
        drop(st);
        self.0.wake.notify_one();
    }

    /// No more frames; the write task sends what is queued, then ends.
    fn close(&self) {
        self.state().closed = true;
        self.0.wake.notify_one();
    }
}

/// Writes whatever the read loops leave to it (or queue with nobody writing),
/// waiting for the socket as long as it takes.
async fn write_loop(out: Outbound) {
    loop {
        let batch = {
            let mut st = out.state();
            match st.writer {
                Writer::Task => Some(st.take()),
                Writer::Idle if !st.buf.is_empty() => {
                    st.writer = Writer::Task;
                    Some(st.take())
                }
                Writer::Idle if st.closed => return,
                Writer::Idle | Writer::Inline => None,
            }
        };
        let Some(mut batch) = batch else {
            out.0.wake.notified().await;
            continue;
        };
        loop {
            while !batch.is_empty() {
                if out.0.socket.writable().await.is_err() {
                    return out.fail();
                }
                match out.0.socket.try_write(&batch) {
                    Ok(0) => return out.fail(),
                    Ok(n) => batch.advance(n),
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => return out.fail(),
                }
            }
            let mut st = out.state();
            st.recycle(batch);
            if st.buf.is_empty() {
                st.writer = Writer::Idle;
                break;
            }
            batch = st.take();
        }
    }
}

/// A client's subscription inside the broker's core: takes each message
/// straight into the client's outbound buffer.
struct SubSink {
    out: Outbound,
    sid: String,
    headers: bool,
    /// 0: no limit.
    max: AtomicU64,
    delivered: AtomicU64,
}

impl SubSink {
    /// Whether it reached its max (and takes no more).
    fn done(&self) -> bool {
        let max = self.max.load(Ordering::Acquire);
        max != 0 && self.delivered.load(Ordering::Acquire) >= max
    }
}

impl Sink for SubSink {
    fn offer(&self, m: &Message) -> Offer {
        let Some(frame) = MsgFrame::of(m, self.headers) else {
            // A status for a client that cannot take one: skipped, not lost.
            return Offer::Taken;
        };
        // Count first: concurrent publishers must not go past the max.
        let claimed = self
            .delivered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let max = self.max.load(Ordering::Acquire);
                (max == 0 || n < max).then_some(n + 1)
            });
        let Ok(before) = claimed else {
            return Offer::Closed;
        };
        match self.out.push(|buf| frame.encode(buf, m, &self.sid)) {
            Ok(()) => {}
            Err(Refused::Slow) => return Offer::Full,
            Err(Refused::Closed) => return Offer::Closed,
        }
        let max = self.max.load(Ordering::Acquire);
        if max != 0 && before + 1 >= max {
            Offer::TakenLast
        } else {
            Offer::Taken
        }
    }

    fn flush(&self, inline: bool) {
        self.out.flush(inline);
    }
}

struct SubEntry {
    sink: Arc<SubSink>,
    /// Unsubscribes when dropped.
    _guard: CoreGuard,
}

/// The server side of one client: what the commands' `apply` works on.
pub struct ClientConn {
    broker: EmbeddedBroker,
    js: Arc<JetStream>,
    config: Arc<ServerConfig>,
    out: Outbound,
    /// `None` until CONNECT.
    options: Option<Connect>,
    subs: HashMap<String, SubEntry>,
    pings_out: u32,
    /// Subscribers our publishes filled, to flush once the read is handled.
    pending: Pending,
}

fn err_frame(text: &str) -> Bytes {
    Bytes::from(format!("-ERR '{text}'\r\n"))
}

impl ClientConn {
    /// Queues a frame of our own (it goes out at the next [`Self::flush`]).
    fn send(&self, frame: impl AsRef<[u8]>) {
        let _ = self.out.push(|buf| buf.put_slice(frame.as_ref()));
    }

    /// Writes what this client's commands produced: our own frames, and the
    /// messages our publishes left with subscribers.
    fn flush(&mut self) {
        self.pending.flush();
        self.out.flush(true);
    }

    fn verbose(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.verbose)
    }

    fn ok(&self) {
        if self.verbose() {
            self.send(Bytes::from_static(b"+OK\r\n"));
        }
    }

    /// `-ERR` and close.
    fn close_with(&self, text: &str) -> Flow {
        self.send(err_frame(text));
        Flow::Close
    }

    pub(crate) fn protocol_violation(&self, e: CmdError) -> Flow {
        tracing::debug!(error = ?e, "wire client sent a malformed operation");
        self.close_with("Unknown Protocol Operation")
    }

    fn parse_error(&self, e: &ParseError) -> Flow {
        tracing::debug!(error = %e, "wire client sent bad input");
        self.close_with(match e {
            ParseError::ControlLineTooLong => "Maximum Control Line Exceeded",
            ParseError::PayloadTooLarge => "Maximum Payload Violation",
            ParseError::UnknownOp | ParseError::Malformed(_) => "Unknown Protocol Operation",
        })
    }

    async fn apply(&mut self, cmd: Command<'_>) -> Flow {
        if self.options.is_none()
            && self.config.auth_token.is_some()
            && !matches!(cmd, Command::Connect(_))
        {
            return self.close_with("Authorization Violation");
        }
        match cmd {
            Command::Connect(c) => c.apply(self).await,
            Command::Pub(c) => c.apply(self).await,
            Command::HPub(c) => c.apply(self).await,
            Command::Sub(c) => c.apply(self).await,
            Command::Unsub(c) => c.apply(self),
            Command::Ping(c) => {
                c.apply(self);
                Flow::Continue
            }
            Command::Pong(c) => {
                c.apply(self);
                Flow::Continue
            }
        }
    }

    pub(crate) fn process_connect(&mut self, options: Connect) -> Flow {
        if let Some(token) = &self.config.auth_token
            && options.auth_token.as_deref() != Some(token.as_str())
        {
            return self.close_with("Authorization Violation");
        }
        self.options = Some(options);
        self.ok();
        Flow::Continue
    }

    pub(crate) async fn process_pub(
        &mut self,
        subject: &str,
        reply: Option<&str>,
        block: Option<HeaderBlock>,
        payload: &[u8],
    ) -> Flow {
        // API subjects carry filters (`CONSUMER.CREATE.s.c.orders.>`): not
        // literals, and not published anywhere.
        if JetStream::handles(subject) {
            if reply.is_some_and(|r| validate_literal(r).is_err()) {
                self.send(err_frame("Invalid Publish Subject"));
                return Flow::Continue;
            }
            self.js.handle(subject, reply, payload).await;
            self.ok();
            return Flow::Continue;
        }
        if validate_literal(subject).is_err() || reply.is_some_and(|r| validate_literal(r).is_err())
        {
            self.send(err_frame("Invalid Publish Subject"));
            return Flow::Continue;
        }
        let mut message = Message::new(subject, Bytes::copy_from_slice(payload));
        for (name, value) in block.map(|b| b.headers).unwrap_or_default() {
            if name == KEY_HEADER {
                message.key = Some(value);
            } else if name != REPLY_HEADER && name != STATUS_HEADER && name != SUBJECT_HEADER {
                message.headers.insert(name, value);
            }
        }
        if let Some(reply) = reply {
            message.headers.insert(REPLY_HEADER.into(), reply.into());
        }
        let published = self
            .broker
            .publish_acked(message, &[REPLY_HEADER], Some(&mut self.pending))
            .await;
        if matches!(&published, Ok((_, stored)) if !stored.is_empty()) {
            // Storing may have waited for a disk sync: what was delivered
            // goes out now, not after the rest of the read (more syncs).
            self.pending.flush();
        }
        match published {
            Ok((_, stored)) if reply.is_some() && !stored.is_empty() => {
                // A JetStream publish: the stream's ack is the answer.
                if let (Some(reply), Some((stream, seq))) = (reply, stored.first()) {
                    let ack = match seq {
                        Some(seq) => serde_json::json!({"stream": stream, "seq": seq}),
                        None => serde_json::json!({"stream": stream, "seq": 0, "duplicate": true}),
                    };
                    let m = Message::new(reply, Bytes::from(ack.to_string()));
                    let _ = self
                        .broker
                        .publish_acked(m, &[], Some(&mut self.pending))
                        .await;
                }
            }
            Ok((0, _)) => {
                let wants_status = self
                    .options
                    .as_ref()
                    .is_some_and(|o| o.headers && o.no_responders);
                if let (Some(reply), true) = (reply, wants_status) {
                    let status =
                        Message::new(reply, Bytes::new()).with_header(STATUS_HEADER, "503");
                    let _ = self
                        .broker
                        .publish_acked(status, &[], Some(&mut self.pending))
                        .await;
                }
            }
            Ok(_) => {}
            Err(BusError::Closed) => return Flow::Close,
            Err(BusError::InvalidSubject(..)) => {
                self.send(err_frame("Invalid Publish Subject"));
                return Flow::Continue;
            }
            Err(BusError::PayloadTooLarge { .. }) => {
                return self.close_with("Maximum Payload Violation");
            }
            Err(e) => {
                tracing::warn!(error = %e, subject, "wire publish failed");
                self.send(err_frame("Publish Failed"));
                return Flow::Continue;
            }
        }
        self.ok();
        Flow::Continue
    }

    pub(crate) async fn process_sub(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        sid: &str,
    ) -> Flow {
        if validate_filter(subject).is_err() {
            self.send(err_frame("Invalid Subject"));
            return Flow::Continue;
        }
        let headers = self.options.as_ref().is_some_and(|o| o.headers);
        let sink = Arc::new(SubSink {
            out: self.out.clone(),
            sid: sid.to_string(),
            headers,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        });
        let guard = match self.broker.subscribe_sink(subject, queue, sink.clone()) {
            Ok(g) => g,
            Err(BusError::Closed) => return Flow::Close,
            Err(_) => {
                self.send(err_frame("Invalid Subject"));
                return Flow::Continue;
            }
        };
        // Auto-unsubscribed entries are already out of the broker: forget them here.
        self.subs.retain(|_, e| !e.sink.done());
        self.subs.insert(
            sid.to_string(),
            SubEntry {
                sink,
                _guard: guard,
            },
        );
        self.ok();
        Flow::Continue
    }

    pub(crate) fn process_unsub(&mut self, sid: &str, max: Option<u64>) -> Flow {
        if let Some(entry) = self.subs.get(sid) {
            match max {
                Some(m) if m > entry.sink.delivered.load(Ordering::Acquire) => {
                    entry.sink.max.store(m, Ordering::Release);
                    // A delivery may have got there first.
                    if entry.sink.done() {
                        self.subs.remove(sid);
                    }
                }
                _ => {
                    self.subs.remove(sid);
                }
            }
        }
        self.ok();
        Flow::Continue
    }

    pub(crate) fn process_ping(&mut self) {
        self.send(Bytes::from_static(b"PONG\r\n"));
    }

    pub(crate) fn process_pong(&mut self) {
        self.pings_out = 0;
    }

    /// The ping timer fired: a client that left our pings unanswered too
    /// often is gone (half-open) and is closed.
    fn ping_tick(&mut self) -> Flow {
        if self.pings_out >= self.config.max_pings_out {
            return self.close_with("Stale Connection");
        }
        self.pings_out += 1;
        self.send(Bytes::from_static(b"PING\r\n"));
        Flow::Continue
    }
}

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
struct MsgFrame<'a> {
    subject: &'a str,
    reply: Option<&'a str>,
    /// `Some` for `HMSG`: the status of the `NATS/1.0` line, if any.
    header_block: Option<Option<u16>>,
}

impl<'a> MsgFrame<'a> {
    /// `None` for a status message to a client that cannot take headers.
    fn of(m: &'a Message, headers: bool) -> Option<Self> {
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
    fn encode(&self, out: &mut BytesMut, m: &Message, sid: &str) {
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
pub(crate) fn encode_msg(m: &Message, sid: &str, headers: bool) -> Option<Bytes> {
    let frame = MsgFrame::of(m, headers)?;
    let mut out = BytesMut::new();
    frame.encode(&mut out, m, sid);
    Some(out.freeze())
}

/// Serves one client until it leaves, misbehaves, or the server shuts down.
pub(crate) async fn run(
    socket: TcpStream,
    broker: EmbeddedBroker,
    js: Arc<JetStream>,
    config: Arc<ServerConfig>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let out = Outbound::new(writer, config.max_pending);
    let mut writer = tokio::spawn(write_loop(out.clone()));
    let mut conn = ClientConn {
        broker,
        js,
        config: config.clone(),
        out: out.clone(),
        options: None,
        subs: HashMap::new(),
        pings_out: 0,
        pending: Pending::default(),
    };
    conn.send(config.info_frame());
    conn.flush();
    let mut buf = BytesMut::with_capacity(READ_MIN);
    let mut read_size = READ_MIN;
    let mut parser = Parser::with_limits(config.max_control_line, config.max_payload);
    let start = tokio::time::Instant::now() + config.ping_interval;
    let mut ping = tokio::time::interval_at(start, config.ping_interval);
    let mut slow = false;
    // Set on shutdown: what the client already sent (acks, say) is still served.
    let mut draining: Option<tokio::time::Instant> = None;
    'conn: loop {
        loop {
            let parsed = match parser.parse(&buf) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => {
                    conn.parse_error(&e);
                    break 'conn;
                }
            };
            let len = parsed.len;
            let flow = match Command::from_op(parsed.op) {
                Ok(cmd) => conn.apply(cmd).await,
                Err(e) => conn.protocol_violation(e),
            };
            buf.advance(len);
            if flow == Flow::Close {
                break 'conn;
            }
        }
        // Everything read is handled: now the writes, one per client touched.
        conn.flush();
        // Like nats-server: reads grow while they fill the buffer.
        buf.reserve(read_size);
        let room = buf.capacity() - buf.len();
        if let Some(until) = draining {
            let idle = DRAIN_IDLE.min(until.saturating_duration_since(tokio::time::Instant::now()));
            match tokio::time::timeout(idle, reader.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => continue,
                _ => break,
            }
        }
        tokio::select! {
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n >= room {
                        read_size = (read_size * 2).min(READ_MAX);
                    }
                }
            },
            _ = ping.tick() => {
                if conn.ping_tick() == Flow::Close {
                    break;
                }
            }
            _ = out.0.kill.notified() => {
                slow = true;
                break;
            }
            _ = shutdown.recv() => {
                draining = Some(tokio::time::Instant::now() + DRAIN_MAX);
            }
        }
    }
    // Subscriptions stop before the buffer drains, so nothing new is queued.
    conn.subs.clear();
    if slow {
        tracing::warn!("wire client disconnected as a slow consumer");
        writer.abort();
        return;
    }
    // Let the last frames (an -ERR) out, but not forever.
    conn.flush();
    drop(conn);
    out.close();
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

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
