//! A deadline on each connection's first request head: a client that has
//! not sent a complete head [`HEAD_TIMEOUT`] after connecting is cut off.
//!
//! Pingora 0.9 times out each *read* of a head (60 s), not the head as a
//! whole, so a client trickling one byte a minute holds its connection
//! forever (slowloris); and with h2c on it peeks for the 24-byte HTTP/2
//! preface with no timeout at all, so a client that connects and sends
//! nothing (or a few bytes) is never closed. Both hold a socket and a task
//! per connection until the process runs out of file descriptors. Later
//! heads on a kept-alive connection stay under Pingora's 60 s idle timeout.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a new connection has to deliver its first complete request
/// head (or the HTTP/2 preface). Envoy's edge-proxy guidance sets its
/// `request_headers_timeout` to 10 s; browsers send a head in one go.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A Pingora app whose connections must deliver their first request head
/// within [`HEAD_TIMEOUT`]; everything else is `A`'s.
pub struct HeadDeadline<A> {
    app: Arc<A>,
}

impl<A> HeadDeadline<A> {
    /// Wraps `app` (e.g. the proxy's `HttpProxy`).
    pub fn new(app: A) -> Self {
        HeadDeadline { app: Arc::new(app) }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for HeadDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = Box::new(Deadlined::new(session, HEAD_TIMEOUT));
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

/// A connection whose reads fail with `TimedOut` once its deadline passes
/// before the end of the first head (`\r\n\r\n`, or a bare `\n\n`, which
/// the HTTP/1 parser also accepts; the HTTP/2 preface contains one too).
struct Deadlined {
    inner: Stream,
    /// Armed until the first head is complete.
    timer: Option<Pin<Box<Sleep>>>,
    deadline: Instant,
    /// Head-end scan: 0, 1 after `\n`, 2 after `\n\r`.
    scan: u8,
}

impl Deadlined {
    fn new(inner: Stream, within: Duration) -> Self {
        let deadline = Instant::now() + within;
        Deadlined {
            inner,
            timer: Some(Box::pin(tokio::time::sleep_until(deadline))),
            deadline,
            scan: 0,
        }
    }
}

/// Feeds bytes read to the head-end scan (`state` starts at 0); true once
/// they complete the head.
fn head_end(state: &mut u8, bytes: &[u8]) -> bool {
    for &b in bytes {
        *state = match (*state, b) {
            (1 | 2, b'\n') => return true,
            (1, b'\r') => 2,
            (_, b'\n') => 1,
            _ => 0,
        };
    }
    false
}

fn overdue() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "request head not received in time")
}

impl AsyncRead for Deadlined {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.timer.is_none() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if head_end(&mut this.scan, &buf.filled()[before..]) {
                    this.timer = None;
                } else if Instant::now() >= this.deadline {
                    // Trickled bytes keep the read ready; the deadline
                    // still holds.
                    return Poll::Ready(Err(overdue()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match this.timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Err(overdue())),
                _ => Poll::Pending,
            },
            other => other,
        }
    }
}

impl AsyncWrite for Deadlined {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Peek for Deadlined {
    /// The h2c preface peek: bounded by the same deadline.
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if self.timer.is_none() {
            return self.inner.try_peek(buf).await;
        }
        tokio::time::timeout_at(self.deadline, self.inner.try_peek(buf))
            .await
            .unwrap_or_else(|_| Err(overdue()))
    }
}

#[async_trait]
impl Shutdown for Deadlined {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await
    }
}

impl UniqueID for Deadlined {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Deadlined {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Deadlined {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Deadlined {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Deadlined {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

impl fmt::Debug for Deadlined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadlined")
            .field("inner", &self.inner)
            .field("armed", &self.timer.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<usize> {
        let mut state = 0;
        chunks.iter().position(|c| head_end(&mut state, c))
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line_across_reads() {
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"]), Some(0));
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: a\r", b"\n", b"\r", b"\n"]),
            Some(3)
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\nHost: a\n\n"]), Some(0));
        assert_eq!(scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]), Some(0));
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\r\n"]), None);
        assert_eq!(scan(&[b"GET / HT", b"TP/1.1\r\n"]), None);
    }
}
