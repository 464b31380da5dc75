//! A deadline on every request head: a client that has started a head
//! and not finished it within [`HEAD_TIMEOUT`] is cut off, on the first
//! request of a connection (counted from the TCP accept, so a slow TLS
//! handshake spends the same budget) and on every later request of a
//! kept-alive connection (counted from the head's first byte).
//!
//! Pingora 0.9 times out each *read* of a head (60 s), not the head as a
//! whole, so a client trickling one byte a minute holds its connection
//! forever (slowloris), on its first request or after idling on keep-alive;
//! and with h2c on it peeks for the 24-byte HTTP/2 preface with no timeout
//! at all, so a client that connects and sends nothing (or a few bytes) is
//! never closed. Both hold a socket and a task per connection until the
//! process runs out of file descriptors.
//!
//! Idle keep-alive is not a head: between requests no deadline runs and
//! Pingora's keep-alive timeout (60 s) closes an idle connection. The
//! wrapper learns that a new head is due from Pingora itself: each HTTP/1
//! request on a connection is one `process_new_http` call, made before its
//! head is read, and [`HeadDeadline`] re-arms the stream's deadline there.
//! Request bodies are never bounded here (the deadline is off from the end
//! of the head until the next request starts).
//!
//! The TLS handshake itself runs inside Pingora's listener before any app
//! sees the connection, under Pingora's fixed 60 s handshake timeout; the
//! first head's deadline counts from the accept, so a handshake that
//! dawdles leaves less time for the head.

use std::fmt;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a client has to deliver a complete request head (or the
/// HTTP/2 preface) once it has started one; a new connection's first head
/// counts from the accept. Envoy's edge-proxy guidance sets its
/// `request_headers_timeout` to 10 s; browsers send a head in one go.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A Pingora HTTP app (the proxy's `HttpProxy`, the ext_authz HTTP
/// service) whose every request head must arrive within [`HEAD_TIMEOUT`];
/// everything else is `A`'s.
pub struct HeadDeadline<A> {
    app: Arc<EachHead<A>>,
}

impl<A> HeadDeadline<A> {
    /// Wraps `app`.
    pub fn new(app: A) -> Self {
        HeadDeadline {
            app: Arc::new(EachHead { app: Arc::new(app) }),
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for HeadDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream: Stream = Box::new(Deadlined::new(session, HEAD_TIMEOUT));
        // Pingora's own connection loop (h2c peek, HTTP/1 keep-alive), over
        // `EachHead`, which re-arms the deadline before each request.
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.app.cleanup().await
    }
}

// === impl EachHead ===

/// `A` with the connection's head deadline re-armed before each request.
struct EachHead<A> {
    app: Arc<A>,
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for EachHead<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // HTTP/1 only: an HTTP/2 stream has no stream of its own here.
        if let Some(stream) = session.stream() {
            if let Some(deadlined) = (**stream).as_any().downcast_ref::<Deadlined>() {
                deadlined.next_head();
            }
        }
        self.app.process_new_http(session, shutdown).await
    }

    fn h2_options(&self) -> Option<pingora::protocols::http::v2::server::H2Options> {
        self.app.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.app.server_options()
    }

    async fn http_cleanup(&self) {
        self.app.http_cleanup().await
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.app
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}

// === impl Deadlined ===

/// Where a connection is between request heads.
enum Phase {
    /// A head is due (or under way) by `deadline`.
    Armed {
        timer: Pin<Box<Sleep>>,
        deadline: Instant,
    },
    /// The next request's head may start any time: no deadline until its
    /// first byte (Pingora's keep-alive timeout bounds the idle time).
    Idle,
    /// The head is complete: body reads and writes are not bounded here.
    Off,
}

/// A connection whose reads fail with `TimedOut` once a started head
/// (`\r\n\r\n`, or a bare `\n\n`, which the HTTP/1 parser also accepts; the
/// HTTP/2 preface contains one too) misses its deadline.
struct Deadlined {
    inner: Stream,
    phase: Phase,
    /// How long a head may take ([`HEAD_TIMEOUT`]).
    within: Duration,
    /// Set by [`Deadlined::next_head`] (through a shared reference, from
    /// `EachHead`); taken by the next read.
    next: AtomicBool,
    /// Head-end scan: 0, 1 after `\n`, 2 after `\n\r`.
    scan: u8,
}

impl Deadlined {
    /// The first head is due `within` of the connection's accept.
    fn new(inner: Stream, within: Duration) -> Self {
        let spent = accepted_ago(&inner);
        let deadline = Instant::now() + within.saturating_sub(spent);
        Deadlined {
            inner,
            phase: armed(deadline),
            within,
            next: AtomicBool::new(false),
            scan: 0,
        }
    }

    /// A new request starts: its head is bounded from its first byte.
    fn next_head(&self) {
        self.next.store(true, Ordering::Release);
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Armed { deadline, .. } => Some(*deadline),
            _ => None,
        }
    }
}

fn armed(deadline: Instant) -> Phase {
    Phase::Armed {
        timer: Box::pin(tokio::time::sleep_until(deadline)),
        deadline,
    }
}

/// How long ago the TCP connection under `stream` was accepted (its
/// TLS handshake, if any, happened since); zero when unknown.
fn accepted_ago(stream: &Stream) -> Duration {
    stream
        .get_timing_digest()
        .iter()
        .flatten()
        .map(|t| t.established_ts)
        .min()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .unwrap_or_default()
}

/// Feeds bytes read to the head-end scan (`state` starts at 0); true once
/// they complete the head: an empty line, `\n\n` or `\n\r\n` (RFC 9112
/// §2.2 lets a recipient take a bare LF as a line end).
///
/// `state` carries what the previous read ended with: 0 nothing, 1 a line
/// end, 2 a line end and `\r`. Only line ends are inspected (`memchr`), so a
/// 4 KiB `Cookie` line costs a vectorised search, not a per-byte loop.
fn head_end(state: &mut u8, bytes: &[u8]) -> bool {
    for i in memchr::memchr_iter(b'\n', bytes) {
        let ended = match i {
            0 => *state != 0,
            1 => bytes[0] == b'\n' || (bytes[0] == b'\r' && *state == 1),
            _ => bytes[i - 1] == b'\n' || (bytes[i - 1] == b'\r' && bytes[i - 2] == b'\n'),
        };
        if ended {
            return true;
        }
    }
    *state = match bytes {
        [.., b'\n'] => 1,
        [.., b'\n', b'\r'] => 2,
        [b'\r'] if *state == 1 => 2,
        [] => *state,
        _ => 0,
    };
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
        // A head that is still due (the first one, from the accept) keeps
        // its deadline; only after a complete head does the next one wait
        // for its first byte.
        if this.next.swap(false, Ordering::AcqRel) && matches!(this.phase, Phase::Off) {
            this.phase = Phase::Idle;
            this.scan = 0;
        }
        if matches!(this.phase, Phase::Off) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                if read.is_empty() {
                    return Poll::Ready(Ok(())); // EOF
                }
                if head_end(&mut this.scan, read) {
                    this.phase = Phase::Off;
                } else if let Phase::Idle = this.phase {
                    // The next head has started: from now on it is due.
                    this.phase = armed(Instant::now() + this.within);
                } else if this.deadline().is_some_and(|d| Instant::now() >= d) {
                    // Trickled bytes keep the read ready; the deadline
                    // still holds.
                    return Poll::Ready(Err(overdue()));
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match &mut this.phase {
                Phase::Armed { timer, .. } => match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(overdue())),
                    Poll::Pending => Poll::Pending,
                },
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
        match self.deadline() {
            None => self.inner.try_peek(buf).await,
            Some(deadline) => tokio::time::timeout_at(deadline, self.inner.try_peek(buf))
                .await
                .unwrap_or_else(|_| Err(overdue())),
        }
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
            .field("armed", &self.deadline().is_some())
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

    /// The byte-at-a-time state machine `head_end` must agree with.
    fn head_end_bytewise(state: &mut u8, bytes: &[u8]) -> bool {
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

    #[test]
    fn the_line_end_search_agrees_with_the_bytewise_scan_for_every_split() {
        let alphabet = [b'\r', b'\n', b'a'];
        // Every string of up to 6 symbols over {CR, LF, a}, cut into reads
        // at every position pair: same verdict, same carried state.
        for len in 0..=6u32 {
            for code in 0..3usize.pow(len) {
                let mut c = code;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % 3];
                        c /= 3;
                        b
                    })
                    .collect();
                for i in 0..=bytes.len() {
                    for j in i..=bytes.len() {
                        let parts = [&bytes[..i], &bytes[i..j], &bytes[j..]];
                        let (mut fast, mut slow) = (0u8, 0u8);
                        for part in parts {
                            let (f, s) = (
                                head_end(&mut fast, part),
                                head_end_bytewise(&mut slow, part),
                            );
                            assert_eq!(f, s, "{bytes:?} split at {i},{j}");
                            if f {
                                break;
                            }
                            assert_eq!(fast, slow, "{bytes:?} split at {i},{j}");
                        }
                    }
                }
            }
        }
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

    // === Deadlined over a loopback TCP pair ===

    const WITHIN: Duration = Duration::from_millis(400);

    /// A `Deadlined` server side (deadline `WITHIN`) and its client.
    async fn pair() -> (Deadlined, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let stream: Stream = Box::new(pingora::protocols::l4::stream::Stream::from(server));
        (Deadlined::new(stream, WITHIN), client)
    }

    /// One read: its byte count, its error, or `usize::MAX` when nothing
    /// came (and no deadline ran out) within `limit`.
    async fn read_for(d: &mut Deadlined, limit: Duration) -> io::Result<usize> {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(limit, d.read(&mut buf)).await {
            Ok(r) => r,
            Err(_) => Ok(usize::MAX), // still waiting: no deadline ran out
        }
    }

    async fn send(client: &mut tokio::net::TcpStream, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt as _;
        client.write_all(bytes).await.unwrap();
    }

    #[tokio::test]
    async fn a_first_head_trickled_past_the_deadline_fails_timed_out() {
        let (mut d, mut client) = pair().await;
        send(&mut client, b"GET / HTTP/1.1\r\n").await;
        assert!(read_for(&mut d, WITHIN).await.unwrap() > 0);
        let err = read_for(&mut d, 4 * WITHIN).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_later_head_is_bounded_from_its_first_byte_not_from_the_idle_time_before_it() {
        let (mut d, mut client) = pair().await;
        send(&mut client, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(read_for(&mut d, WITHIN).await.unwrap() > 0);
        // The response went out; Pingora starts the next request.
        d.next_head();
        // Idle for longer than the deadline: allowed (keep-alive).
        assert_eq!(read_for(&mut d, 2 * WITHIN).await.unwrap(), usize::MAX);
        // A second head starts and stalls: cut at the deadline.
        send(&mut client, b"GET /2 HT").await;
        assert!(read_for(&mut d, WITHIN).await.unwrap() > 0);
        let err = read_for(&mut d, 4 * WITHIN).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_body_after_a_complete_head_is_not_bounded() {
        let (mut d, mut client) = pair().await;
        send(
            &mut client,
            b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc",
        )
        .await;
        assert!(read_for(&mut d, WITHIN).await.unwrap() > 0);
        assert_eq!(read_for(&mut d, 2 * WITHIN).await.unwrap(), usize::MAX);
        send(&mut client, b"defghi").await;
        assert_eq!(read_for(&mut d, WITHIN).await.unwrap(), 6);
    }

    #[tokio::test]
    async fn the_first_head_keeps_its_deadline_when_its_request_starts() {
        let (mut d, _client) = pair().await;
        // Pingora announces the first request too; a silent client is
        // still cut at the deadline counted from the accept.
        d.next_head();
        let err = read_for(&mut d, 4 * WITHIN).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }
}
