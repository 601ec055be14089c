//! One client connection: the read loop (parse → command → `process_*`), the
//! write loop, and the client's subscriptions.
//!
//! Reading is mini-redis style: one `BytesMut`, parse what is complete, then
//! `advance`; an incomplete operation just waits for the next read. Writing
//! goes through a bounded queue to a task owning the `BufWriter`, so a
//! publisher never waits for a slow reader: a client whose queue is over its
//! byte limit is a slow consumer and is disconnected, nobody else stalls.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Notify, broadcast, mpsc};

use super::cmd::{CmdError, Command, Connect, HeaderBlock};
use super::jetstream::JetStream;
use super::parser::{ParseError, Parser};
use super::{KEY_HEADER, REPLY_HEADER, STATUS_HEADER, SUBJECT_HEADER, ServerConfig};
use crate::embedded::EmbeddedBroker;
use crate::embedded::subject::{validate_filter, validate_literal};
use crate::{BusError, Message, Subscription};

/// Frames a client may have queued (the byte limit usually bites first).
const OUT_FRAMES: usize = 65_536;
/// On shutdown a client's input is served until it is this long idle ...
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// ... or for this long at most.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close,
}

/// The sending side of a client: bounded in frames and bytes, never waits.
#[derive(Clone)]
pub(crate) struct Outbound {
    tx: mpsc::Sender<Bytes>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
    slow: Arc<AtomicBool>,
    kill: Arc<Notify>,
}

impl Outbound {
    /// Queues a frame; `false` once the client is a slow consumer.
    pub(crate) fn send(&self, frame: Bytes) -> bool {
        if self.slow.load(Ordering::Acquire) {
            return false;
        }
        let n = frame.len();
        if self.pending.fetch_add(n, Ordering::AcqRel) + n > self.max_pending {
            self.mark_slow();
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.mark_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn mark_slow(&self) {
        if !self.slow.swap(true, Ordering::AcqRel) {
            self.kill.notify_one();
        }
    }
}

struct SubEntry {
    task: tokio::task::JoinHandle<()>,
    /// 0: no limit.
    max: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
}

impl Drop for SubEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
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
}

fn err_frame(text: &str) -> Bytes {
    Bytes::from(format!("-ERR '{text}'\r\n"))
}

impl ClientConn {
    fn send(&self, frame: impl Into<Bytes>) {
        self.out.send(frame.into());
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
        match self.broker.publish_acked(message, &[REPLY_HEADER]).await {
            Ok((_, stored)) if reply.is_some() && !stored.is_empty() => {
                // A JetStream publish: the stream's ack is the answer.
                if let (Some(reply), Some((stream, seq))) = (reply, stored.first()) {
                    let ack = match seq {
                        Some(seq) => serde_json::json!({"stream": stream, "seq": seq}),
                        None => serde_json::json!({"stream": stream, "seq": 0, "duplicate": true}),
                    };
                    let m = Message::new(reply, Bytes::from(ack.to_string()));
                    let _ = self.broker.publish_counted(m).await;
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
                    let _ = self.broker.publish_counted(status).await;
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
        let sub = match queue {
            Some(q) => self.broker.subscribe_queue(subject, q).await,
            None => crate::Bus::subscribe(&self.broker, subject).await,
        };
        let sub = match sub {
            Ok(s) => s,
            Err(BusError::Closed) => return Flow::Close,
            Err(_) => {
                self.send(err_frame("Invalid Subject"));
                return Flow::Continue;
            }
        };
        // Auto-unsubscribed entries are finished tasks: forget them here.
        self.subs.retain(|_, e| !e.task.is_finished());
        let max = Arc::new(AtomicU64::new(0));
        let delivered = Arc::new(AtomicU64::new(0));
        let headers = self.options.as_ref().is_some_and(|o| o.headers);
        let task = tokio::spawn(forward(
            sub,
            sid.to_string(),
            self.out.clone(),
            headers,
            max.clone(),
            delivered.clone(),
        ));
        self.subs.insert(
            sid.to_string(),
            SubEntry {
                task,
                max,
                delivered,
            },
        );
        self.ok();
        Flow::Continue
    }

    pub(crate) fn process_unsub(&mut self, sid: &str, max: Option<u64>) -> Flow {
        if let Some(entry) = self.subs.get(sid) {
            match max {
                Some(m) if m > entry.delivered.load(Ordering::Acquire) => {
                    entry.max.store(m, Ordering::Release);
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

/// Delivers one subscription's messages to the client until it ends, is
/// unsubscribed, reaches its max, or the client is a slow consumer.
async fn forward(
    mut sub: Subscription,
    sid: String,
    out: Outbound,
    headers: bool,
    max: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
) {
    while let Some(d) = sub.next().await {
        let Some(frame) = encode_msg(&d.message, &sid, headers) else {
            continue;
        };
        if !out.send(frame) {
            return;
        }
        let n = delivered.fetch_add(1, Ordering::AcqRel) + 1;
        let m = max.load(Ordering::Acquire);
        if m != 0 && n >= m {
            return;
        }
    }
}

/// `MSG`/`HMSG` for a message; `None` for a status message to a client that
/// cannot take headers.
pub(crate) fn encode_msg(m: &Message, sid: &str, headers: bool) -> Option<Bytes> {
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
        if name != REPLY_HEADER && name != STATUS_HEADER && name != SUBJECT_HEADER {
            block.headers.push((name.clone(), value.clone()));
        }
    }
    let with_headers = headers && (block.status.is_some() || !block.headers.is_empty());
    if block.status.is_some() && !with_headers {
        return None;
    }
    let mut out = BytesMut::with_capacity(m.payload.len() + m.subject.len() + 64);
    let mut hdr = BytesMut::new();
    if with_headers {
        block.encode(&mut hdr);
        out.put_slice(b"HMSG ");
    } else {
        out.put_slice(b"MSG ");
    }
    out.put_slice(subject.as_bytes());
    out.put_u8(b' ');
    out.put_slice(sid.as_bytes());
    if let Some(reply) = reply {
        out.put_u8(b' ');
        out.put_slice(reply.as_bytes());
    }
    if with_headers {
        out.put_slice(format!(" {} {}\r\n", hdr.len(), hdr.len() + m.payload.len()).as_bytes());
        out.put_slice(&hdr);
    } else {
        out.put_slice(format!(" {}\r\n", m.payload.len()).as_bytes());
    }
    out.put_slice(&m.payload);
    out.put_slice(b"\r\n");
    Some(out.freeze())
}

async fn write_loop(
    mut w: BufWriter<OwnedWriteHalf>,
    mut rx: mpsc::Receiver<Bytes>,
    pending: Arc<AtomicUsize>,
) {
    while let Some(frame) = rx.recv().await {
        let mut batch = vec![frame];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 256 {
                break;
            }
        }
        for f in &batch {
            if w.write_all(f).await.is_err() {
                return;
            }
            pending.fetch_sub(f.len(), Ordering::AcqRel);
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.flush().await;
    let _ = w.shutdown().await;
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
    let (tx, rx) = mpsc::channel(OUT_FRAMES);
    let pending = Arc::new(AtomicUsize::new(0));
    let kill = Arc::new(Notify::new());
    let out = Outbound {
        tx,
        pending: pending.clone(),
        max_pending: config.max_pending,
        slow: Arc::new(AtomicBool::new(false)),
        kill: kill.clone(),
    };
    let mut writer = tokio::spawn(write_loop(BufWriter::new(writer), rx, pending));
    let mut conn = ClientConn {
        broker,
        js,
        config: config.clone(),
        out,
        options: None,
        subs: HashMap::new(),
        pings_out: 0,
    };
    conn.send(config.info_frame());
    let mut buf = BytesMut::with_capacity(4096);
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
                Ok(_) => {}
            },
            _ = ping.tick() => {
                if conn.ping_tick() == Flow::Close {
                    break;
                }
            }
            _ = kill.notified() => {
                slow = true;
                break;
            }
            _ = shutdown.recv() => {
                draining = Some(tokio::time::Instant::now() + DRAIN_MAX);
            }
        }
    }
    // Subscriptions stop before the queue drains, so nothing new is queued.
    conn.subs.clear();
    if slow {
        tracing::warn!("wire client disconnected as a slow consumer");
        writer.abort();
        return;
    }
    drop(conn);
    // Let the last frames (an -ERR) out, but not forever.
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}
