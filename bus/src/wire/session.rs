//! One client connection: the read loop (parse → command → `process_*`) and
//! the client's subscriptions. Its writes go through [`Outbound`].
//!
//! Reading is mini-redis style: one `BytesMut`, parse what is complete, then
//! `advance`; an incomplete operation just waits for the next read.
//!
//! A subscription is a [`Sink`] in the broker's core that encodes each message
//! straight into the subscriber's outbound buffer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::broadcast;

use super::auth::{Permissions, SubscribeDecision, full_permissions};
use super::cmd::{CmdError, Command, Connect, HeaderBlock};
use super::framing::MsgFrame;
use super::jetstream::JetStream;
use super::outbound::{Outbound, Refused, TotalPending, WriteSocket, write_loop};
use super::parser::{ParseError, Parser};
use super::{KEY_HEADER, REPLY_HEADER, STATUS_HEADER, SUBJECT_HEADER, ServerConfig};
use crate::embedded::{EmbeddedBroker, FanoutGuard, Offer, Pending, Sink};
use crate::subject::{matches, validate_filter, validate_literal};
use crate::{BusError, Message};

/// On shutdown a client's input is served until it is this long idle ...
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// ... or for this long at most.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(1);
/// Reads start this large and double while they fill the buffer ...
const READ_MIN: usize = 4 * 1024;
/// ... up to this.
const READ_MAX: usize = 64 * 1024;

/// A client's connection as the session sees it: TCP, or the plain-text end
/// of a TLS connection (see `tls`).
pub(crate) enum ClientSocket {
    Tcp(TcpStream),
    Local(UnixStream),
}

impl ClientSocket {
    fn split(self) -> (Box<dyn AsyncRead + Send + Unpin>, WriteSocket) {
        match self {
            ClientSocket::Tcp(s) => {
                let _ = s.set_nodelay(true);
                let (r, w) = s.into_split();
                (Box::new(r), WriteSocket::Tcp(w))
            }
            ClientSocket::Local(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), WriteSocket::Local(w))
            }
        }
    }
}

/// What every session of one listener shares.
pub(crate) struct Shared {
    pub(crate) broker: EmbeddedBroker,
    pub(crate) js: Arc<JetStream>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) total: Arc<TotalPending>,
}

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Close the connection.
    Close,
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
    /// Subjects this client may not see although its filter matches them.
    deny: Option<Arc<[String]>>,
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
        if let Some(deny) = &self.deny {
            let shown = m.headers.get(SUBJECT_HEADER).unwrap_or(&m.subject);
            if deny.iter().any(|d| matches(d, shown)) {
                // Not for this client's eyes: skipped, like nats-server.
                return Offer::Taken;
            }
        }
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
    _guard: FanoutGuard,
}

/// The server side of one client: what the commands' `apply` works on.
pub(crate) struct ClientConn {
    broker: EmbeddedBroker,
    js: Arc<JetStream>,
    config: Arc<ServerConfig>,
    peer: SocketAddr,
    out: Outbound,
    /// `None` until CONNECT.
    options: Option<Connect>,
    /// What the client may publish and subscribe to (everything until an
    /// authenticated CONNECT says otherwise, when the listener has no auth).
    perms: Arc<Permissions>,
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
            ParseError::UnknownOp | ParseError::ServerOnly | ParseError::Malformed(_) => {
                "Unknown Protocol Operation"
            }
        })
    }

    async fn apply(&mut self, cmd: Command<'_>) -> Flow {
        if self.options.is_none()
            && self.config.auth.is_some()
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

    pub(crate) async fn process_connect(&mut self, options: Connect) -> Flow {
        if let Some(auth) = self.config.auth.clone() {
            let found = auth
                .authenticate(
                    options.auth_token.as_deref(),
                    options.user.as_deref(),
                    options.pass.as_deref(),
                )
                .await;
            match found {
                Some((who, perms)) => {
                    tracing::debug!(peer = %self.peer, user = %who, "wire client authenticated");
                    self.perms = perms;
                }
                None => {
                    tracing::warn!(
                        peer = %self.peer,
                        user = options.user.as_deref().unwrap_or(""),
                        "wire client refused: wrong or missing credentials"
                    );
                    return self.close_with("Authorization Violation");
                }
            }
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
        if !self.perms.may_publish(subject) {
            tracing::debug!(peer = %self.peer, subject, "wire publish refused by permissions");
            self.send(err_frame(&format!(
                "Permissions Violation for Publish to {subject:?}"
            )));
            return Flow::Continue;
        }
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
        let deny = match self.perms.subscribe(subject) {
            SubscribeDecision::Allowed => None,
            SubscribeDecision::Filtered(deny) => Some(deny),
            SubscribeDecision::Refused => {
                tracing::debug!(peer = %self.peer, subject, "wire subscription refused by permissions");
                let text = match queue {
                    Some(q) => format!(
                        "Permissions Violation for Subscription to {subject:?} using queue {q:?}"
                    ),
                    None => format!("Permissions Violation for Subscription to {subject:?}"),
                };
                self.send(err_frame(&text));
                return Flow::Continue;
            }
        };
        // Auto-unsubscribed entries are already out of the broker: forget them here.
        self.subs.retain(|_, e| !e.sink.done());
        if self.subs.len() >= self.config.max_subscriptions && !self.subs.contains_key(sid) {
            self.send(err_frame("Maximum Subscriptions Exceeded"));
            return Flow::Continue;
        }
        let headers = self.options.as_ref().is_some_and(|o| o.headers);
        let sink = Arc::new(SubSink {
            out: self.out.clone(),
            sid: sid.to_string(),
            headers,
            max: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            deny,
        });
        let guard = match self.broker.subscribe_sink(subject, queue, sink.clone()) {
            Ok(g) => g,
            Err(BusError::Closed) => return Flow::Close,
            Err(_) => {
                self.send(err_frame("Invalid Subject"));
                return Flow::Continue;
            }
        };
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

/// Serves one client until it leaves, misbehaves, or the server shuts down.
/// `info_sent`: the INFO already went out (before a TLS handshake).
pub(crate) async fn run(
    socket: ClientSocket,
    peer: SocketAddr,
    info_sent: bool,
    shared: Arc<Shared>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let config = shared.config.clone();
    let (mut reader, writer) = socket.split();
    let out = Outbound::new(writer, config.max_pending, shared.total.clone());
    let mut writer = tokio::spawn(write_loop(out.clone()));
    let mut conn = ClientConn {
        broker: shared.broker.clone(),
        js: shared.js.clone(),
        config: config.clone(),
        peer,
        out: out.clone(),
        options: None,
        perms: full_permissions(),
        subs: HashMap::new(),
        pings_out: 0,
        pending: Pending::default(),
    };
    if !info_sent {
        conn.send(config.info_frame());
        conn.flush();
    }
    // The client has this long to CONNECT (nats-server's auth timeout): an
    // idle socket must not hold a connection slot.
    let connect_deadline = tokio::time::sleep(config.connect_timeout);
    tokio::pin!(connect_deadline);
    // The read buffer never holds more than one operation and one read.
    let max_buffered = config.max_control_line + config.max_payload + 2 + READ_MAX;
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
        if buf.len() > max_buffered {
            // The parser bounds what it waits for; this is the backstop.
            tracing::warn!(peer = %peer, bytes = buf.len(), "wire client's input over the read buffer cap");
            conn.close_with("Maximum Payload Violation");
            break;
        }
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
            _ = out.slow_consumer() => {
                slow = true;
                break;
            }
            _ = shutdown.recv() => {
                draining = Some(tokio::time::Instant::now() + DRAIN_MAX);
            }
            _ = &mut connect_deadline, if conn.options.is_none() => {
                tracing::debug!(peer = %peer, "wire client sent no CONNECT in time");
                conn.close_with("Authentication Timeout");
                break;
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
