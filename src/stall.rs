//! A bound on writes to a peer that keeps its TCP window shut.
//!
//! [`WriteStall`] wraps a connection's byte stream (below TLS, so it sees the
//! socket): a write, flush or shutdown that has made no progress for the
//! configured time fails with [`std::io::ErrorKind::TimedOut`], and every later
//! one fails at once. A peer that reads, however slowly, resets the clock with
//! every byte the socket takes; one that stops reading (SIGSTOPped, or hostile)
//! fills the socket buffers and is cut off once the time is up, instead of holding
//! the writer (and whatever it owns: a Foolscap connection's write lock, a
//! response body, an upload) for good. Reads pass through untouched: how long a
//! peer may stay silent is the idle and header timeouts' business.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose writes fail once they have been stuck for `limit`.
pub struct WriteStall<S> {
    inner: S,
    limit: Option<Duration>,
    /// Armed while a write is pending: when it expires the write fails.
    timer: Option<Pin<Box<Sleep>>>,
    /// Set once the limit was reached: the stream is unusable for writing.
    stalled: bool,
}

impl<S> WriteStall<S> {
    /// Wrap `inner`; `None` leaves writes unbounded.
    pub fn new(inner: S, limit: Option<Duration>) -> WriteStall<S> {
        WriteStall {
            inner,
            limit,
            timer: None,
            stalled: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn error(limit: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the peer took no bytes for {} s: write stalled (write_stall_timeout_secs)",
                limit.as_secs_f64()
            ),
        )
    }

    /// After a write poll: progress disarms the timer; `Pending` arms it (once) and
    /// fails the write if it has expired.
    fn account<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Some(limit) = self.limit else {
            return r;
        };
        match r {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timer = self.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + limit))
                });
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.timer = None;
                        self.stalled = true;
                        Poll::Ready(Err(Self::error(limit)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn check(&self) -> io::Result<()> {
        match (self.stalled, self.limit) {
            (true, Some(limit)) => Err(Self::error(limit)),
            _ => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.account(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.account(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.account(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.stalled {
            // Nothing more gets through; closing the socket is all that is left.
            return Poll::Ready(Ok(()));
        }
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.account(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A peer that reads nothing: the write fails after the limit, and so does the
    /// next one, at once.
    #[tokio::test]
    async fn a_write_the_peer_never_takes_fails_after_the_limit() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut w = WriteStall::new(a, Some(Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let e = w.write_all(&[0; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let e = w.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    /// A peer that reads slowly but steadily is never cut off, however long the
    /// whole write takes: each byte taken resets the clock.
    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteStall::new(a, Some(Duration::from_millis(300)));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0; 1024];
            while got < 16 * 1024 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                got += b.read(&mut buf).await.unwrap();
            }
            got
        });
        w.write_all(&[7; 16 * 1024]).await.unwrap();
        w.flush().await.unwrap();
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }

    /// No limit: the wrapper is transparent.
    #[tokio::test]
    async fn no_limit_never_fails() {
        let (a, mut b) = tokio::io::duplex(16);
        let mut w = WriteStall::new(a, None);
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut v = Vec::new();
            b.read_to_end(&mut v).await.unwrap();
            v.len()
        });
        w.write_all(&[1; 100]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 100);
    }
}
