//! A client's outbound buffer and the task that writes it.
//!
//! After nats-server: a publisher's read loop encodes each `MSG` straight into
//! the subscriber's outbound buffer; once it has handled everything it read, it
//! writes each buffer it filled to its socket itself if nobody is writing it
//! and the socket takes it, and otherwise leaves it to that client's write
//! task. A publisher never waits for a slow reader: a client whose buffer is
//! over its byte limit is a slow consumer and is disconnected, nobody else stalls.

use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::{Buf, BytesMut};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Buffers start this large.
const BUFFER_START: usize = 4 * 1024;
/// A drained outbound buffer larger than this is freed, not kept for reuse.
const KEEP_BUFFER: usize = 1024 * 1024;
/// An inline writer hands over to the write task after this many buffers.
const INLINE_ROUNDS: usize = 2;
/// While every client's output together is over its cap, a client may still
/// queue up to this much: one that keeps up is not cut off for the others.
const SHARE_WHEN_FULL: usize = 1024 * 1024;

/// The socket a client's output goes to: TCP, or the local end of a TLS
/// connection's pump (see `tls`).
pub(super) enum WriteSocket {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Local(tokio::net::unix::OwnedWriteHalf),
}

impl WriteSocket {
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WriteSocket::Tcp(s) => s.try_write(buf),
            WriteSocket::Local(s) => s.try_write(buf),
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            WriteSocket::Tcp(s) => s.writable().await,
            WriteSocket::Local(s) => s.writable().await,
        }
    }
}

/// Output queued for every client of a listener together, against its cap.
#[derive(Debug)]
pub(crate) struct TotalPending {
    bytes: AtomicUsize,
    max: usize,
}

impl TotalPending {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            bytes: AtomicUsize::new(0),
            max,
        })
    }

    fn over(&self) -> bool {
        self.bytes.load(Ordering::Acquire) > self.max
    }

    fn adjust(&self, from: usize, to: usize) {
        if to > from {
            self.bytes.fetch_add(to - from, Ordering::AcqRel);
        } else {
            self.bytes.fetch_sub(from - to, Ordering::AcqRel);
        }
    }
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
    /// `buf` and `in_flight` as last counted in the listener's total.
    counted: usize,
}

impl OutState {
    fn pending(&self) -> usize {
        self.buf.len() + self.in_flight
    }

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
    socket: WriteSocket,
    /// Wakes the write task.
    wake: Notify,
    /// Wakes the read loop: the client is a slow consumer.
    kill: Notify,
    slow: AtomicBool,
    max_pending: usize,
    total: Arc<TotalPending>,
}

impl OutShared {
    /// Brings the listener's total in line with this client's queue.
    fn settle(&self, st: &mut OutState) {
        let now = st.pending();
        if now != st.counted {
            self.total.adjust(st.counted, now);
            st.counted = now;
        }
    }
}

impl Drop for OutShared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        self.total.adjust(st.counted, 0);
    }
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    Slow,
    Closed,
}

/// The sending side of a client: one buffer, bounded in bytes, never waits.
#[derive(Clone)]
pub(crate) struct Outbound(Arc<OutShared>);

impl Outbound {
    pub(super) fn new(socket: WriteSocket, max_pending: usize, total: Arc<TotalPending>) -> Self {
        Self(Arc::new(OutShared {
            state: Mutex::new(OutState {
                buf: BytesMut::with_capacity(BUFFER_START),
                spare: BytesMut::with_capacity(BUFFER_START),
                in_flight: 0,
                writer: Writer::Idle,
                closed: false,
                counted: 0,
            }),
            socket,
            wake: Notify::new(),
            kill: Notify::new(),
            slow: AtomicBool::new(false),
            max_pending,
            total,
        }))
    }

    fn state(&self) -> MutexGuard<'_, OutState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends what `encode` writes; refused once the client is a slow
    /// consumer (this frame would take it over its limit) or closed.
    pub(super) fn push(&self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), Refused> {
        if self.0.slow.load(Ordering::Acquire) {
            return Err(Refused::Slow);
        }
        let mut st = self.state();
        if st.closed {
            return Err(Refused::Closed);
        }
        let before = st.buf.len();
        encode(&mut st.buf);
        let pending = st.pending();
        if pending > self.0.max_pending || (pending > SHARE_WHEN_FULL && self.0.total.over()) {
            st.buf.truncate(before);
            drop(st);
            self.mark_slow();
            return Err(Refused::Slow);
        }
        self.0.settle(&mut st);
        Ok(())
    }

    /// Completes once the client turned out to be a slow consumer.
    pub(super) fn slow_consumer(&self) -> Notified<'_> {
        self.0.kill.notified()
    }

    fn mark_slow(&self) {
        if !self.0.slow.swap(true, Ordering::AcqRel) {
            self.0.kill.notify_one();
        }
    }

    /// Gets the queued frames moving: with `inline`, writes them here and now
    /// as far as the socket takes them; otherwise wakes the write task.
    /// Nothing to do while someone else is writing: they write these too.
    pub(super) fn flush(&self, inline: bool) {
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
                    self.0.settle(&mut st);
                    st.writer = Writer::Task;
                    drop(st);
                    self.0.wake.notify_one();
                    return;
                }
                Err(_) => return self.fail(),
            }
            let mut st = self.state();
            st.recycle(batch);
            self.0.settle(&mut st);
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
        self.0.settle(&mut st);
        drop(st);
        self.0.wake.notify_one();
    }

    /// No more frames; the write task sends what is queued, then ends.
    pub(super) fn close(&self) {
        self.state().closed = true;
        self.0.wake.notify_one();
    }
}

/// Writes whatever the read loops leave to it (or queue with nobody writing),
/// waiting for the socket as long as it takes.
pub(super) async fn write_loop(out: Outbound) {
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
            out.0.settle(&mut st);
            if st.buf.is_empty() {
                st.writer = Writer::Idle;
                break;
            }
            batch = st.take();
        }
    }
}
