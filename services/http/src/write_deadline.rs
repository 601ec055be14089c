//! A bound on how long a response may wait for its client to read it.
//!
//! hyper has no write timeout: a client that asks for a response and then
//! stops reading holds its connection, and the response's memory, for as
//! long as it likes. [`WriteDeadline`] wraps the connection and fails a
//! write that has made no progress for the limit, and hyper then closes the
//! connection. Only stalled writes are timed: an idle kept-alive connection
//! waiting for its next request is the header-read timeout's business.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The error of a write that stalled past the limit.
pub const STALLED: &str = "the client did not read the response in time";

/// A connection whose writes fail after `limit` without progress.
pub struct WriteDeadline<IO> {
    io: IO,
    limit: Duration,
    /// Running while a write is pending; made only then, so a client that
    /// keeps up costs no timer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteDeadline<IO> {
    /// `io`, closed when a write waits longer than `limit`.
    pub fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    fn bound<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, STALLED)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bound(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bound(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.bound(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.bound(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit() {
        // A pipe whose reader never reads: writes stall once its buffer is full.
        let (ours, _theirs) = tokio::io::duplex(1024);
        let limit = Duration::from_millis(300);
        let mut conn = WriteDeadline::new(ours, limit);
        let started = tokio::time::Instant::now();
        let err = conn.write_all(&[7u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(err.to_string(), STALLED);
        assert!(started.elapsed() >= limit);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_taking_bytes_is_never_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 512];
            while got < 8192 {
                // Each pause is well within the limit; all 16 together are not.
                tokio::time::sleep(Duration::from_millis(200)).await;
                got += theirs.read(&mut buf).await.unwrap();
            }
            got
        });
        let mut conn = WriteDeadline::new(ours, Duration::from_secs(1));
        conn.write_all(&[7u8; 8192]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 8192);
    }
}
