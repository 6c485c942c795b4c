//! One port, two protocols: tell Foolscap from GBS by the first bytes, as Tahoe
//! 1.20's `protocol_switch` does (at least 8 bytes; `GET /id/` is Foolscap's
//! plaintext upgrade, anything else goes to the TLS server).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Tahoe waits for 8 bytes before choosing.
pub const SNIFF_BYTES: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Foolscap,
    /// A TLS ClientHello (record type 22), handed to the GBS server.
    Tls,
    /// Neither: closed without an answer (Tahoe answers plaintext HTTP with nothing).
    Unknown,
}

/// Classify the first bytes of a connection (at least [`SNIFF_BYTES`] of them).
pub fn classify(first: &[u8]) -> Protocol {
    if first.starts_with(b"GET /id/") {
        Protocol::Foolscap
    } else if first.first() == Some(&0x16) {
        Protocol::Tls
    } else {
        Protocol::Unknown
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("fewer than {SNIFF_BYTES} bytes within {0:?}")]
    Timeout(Duration),
    #[error("connection closed after {0} bytes, before the protocol was known")]
    Closed(usize),
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
}

/// Read the first bytes of `s` (within `timeout`) and classify them. The bytes read
/// are returned so the chosen protocol can be handed them.
pub async fn sniff<S: AsyncRead + Unpin>(
    s: &mut S,
    timeout: Duration,
) -> Result<(Protocol, BytesMut), SniffError> {
    let mut buf = BytesMut::with_capacity(512);
    let fut = async {
        while buf.len() < SNIFF_BYTES {
            if s.read_buf(&mut buf).await? == 0 {
                return Err(SniffError::Closed(buf.len()));
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(())) => Ok((classify(&buf), buf)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(SniffError::Timeout(timeout)),
    }
}

/// A stream whose first reads return bytes already taken from it.
pub struct Prefixed<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: BytesMut, inner: S) -> Prefixed<S> {
        Prefixed { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(b"GET /id/abc HTTP/1.1"), Protocol::Foolscap);
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0, 0, 1, 0, 0]), Protocol::Tls);
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Protocol::Unknown);
    }

    #[tokio::test]
    async fn sniff_waits_for_eight_bytes_and_replays_them() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET /").await.unwrap();
        let t = tokio::spawn(async move {
            let (p, prefix) = sniff(&mut b, Duration::from_secs(5)).await.unwrap();
            let mut s = Prefixed::new(prefix, b);
            let mut all = vec![0u8; 12];
            s.read_exact(&mut all).await.unwrap();
            (p, all)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.write_all(b"id/abcdefg").await.unwrap();
        let (p, all) = t.await.unwrap();
        assert_eq!(p, Protocol::Foolscap);
        assert_eq!(&all, b"GET /id/abcd");
    }

    #[tokio::test]
    async fn sniff_times_out_and_reports_early_close() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(b"GET").await.unwrap();
        let e = sniff(&mut b, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, SniffError::Timeout(_)), "{e}");
        drop(a);
        let e = sniff(&mut b, Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(e, SniffError::Closed(0)), "{e}");
    }
}
