//! The one small HTTP/1.1 server of the demo and the tests: loopback only, a
//! request → reply handler, keep-alive, Content-Length and chunked bodies.
//!
//! `authgate demo` serves its development IdP and echo upstream with it, the
//! unit tests' kit serves the IdP with it and the integration tests serve the
//! IdP and their upstreams with it. It is deliberately small: no TLS, no
//! HTTP/2, requests on one connection answered in order, whole bodies in
//! memory (capped). Like everything in the demo it refuses to listen anywhere
//! but loopback.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::DemoError;

/// Longest request head (request line and header lines) read, in bytes; a
/// longer one is answered 431 and the connection closed.
pub const MAX_HEAD: usize = 4 << 20;
/// Largest request body read, in bytes; a larger one is answered 413 and the
/// connection closed.
pub const MAX_BODY: usize = 16 << 20;
/// Most header lines one request may have.
const MAX_HEADERS: usize = 512;

/// One request as the server received it. Header names keep their wire case
/// and order.
#[derive(Clone)]
pub struct Request {
    /// The method token as sent (`GET`, `POST`, ...).
    pub method: String,
    /// The request target as sent (`/authorize?client_id=...`).
    pub target: String,
    /// Every header line as (name, value); values decoded lossily as UTF-8.
    /// [`Request::header_bytes`] has the exact bytes.
    pub headers: Vec<(String, String)>,
    raw_headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked when it came chunked; empty when there was none.
    pub body: Vec<u8>,
}

/// Header names and the body's length only: values may be cookies or tokens.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field(
                "header_names",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Request {
    /// Every value of a header (lossy UTF-8), the name matched case-insensitively.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The first value of a header (lossy UTF-8), if any.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header exactly as received (non-UTF-8 included).
    pub fn header_bytes(&self, name: &str) -> Vec<Vec<u8>> {
        self.raw_headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The headers as an [`http::HeaderMap`]; a line whose name or value
    /// `http` refuses is left out.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.raw_headers.len());
        for (name, value) in &self.raw_headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        map
    }

    /// True for an `Upgrade` request (RFC 9110 7.8): an `Upgrade` header and
    /// `upgrade` among the `Connection` options.
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade").is_some()
            && self
                .header_all("connection")
                .iter()
                .any(|v| v.to_ascii_lowercase().contains("upgrade"))
    }

    fn wants_close(&self, http10: bool) -> bool {
        let options = self.header_all("connection");
        let has = |o: &str| {
            options
                .iter()
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(o))
        };
        // HTTP/1.1 persists unless told to close; HTTP/1.0 closes unless told to keep alive.
        has("close") || (http10 && !has("keep-alive"))
    }
}

/// What a handler answers.
pub enum Reply {
    /// A whole response. The server writes `content-length` itself (any
    /// `content-length`, `transfer-encoding` or `connection` header of the
    /// response is dropped) and omits the body for `HEAD`.
    Response(Response<Vec<u8>>),
    /// `101 Switching Protocols`, then every byte received is echoed back
    /// until the client closes: an upstream for tests of `Upgrade` passthrough.
    UpgradeEcho,
}

impl From<Response<Vec<u8>>> for Reply {
    fn from(resp: Response<Vec<u8>>) -> Reply {
        Reply::Response(resp)
    }
}

/// The future a [`Handler`] returns.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// Turns one request into its reply; called once per request, concurrently
/// for requests on different connections.
pub type Handler = Arc<dyn Fn(Request) -> ReplyFuture + Send + Sync>;

/// Wraps an async function as a [`Handler`].
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    Arc::new(move |req| Box::pin(f(req)))
}

/// Serves `listener` with `handler` on a spawned task (the caller's tokio
/// runtime) until the task is aborted or the runtime ends.
///
/// Errors with [`DemoError::NotLoopback`] unless the listener is bound to a
/// loopback address.
pub fn spawn(listener: TcpListener, handler: Handler) -> Result<JoinHandle<()>, DemoError> {
    check_loopback(&listener)?;
    Ok(tokio::spawn(accept_loop(listener, handler)))
}

/// Serves `listener` with `handler` in the current task; runs until the
/// future is dropped. Errors as [`spawn`] does.
pub async fn serve(listener: TcpListener, handler: Handler) -> Result<(), DemoError> {
    check_loopback(&listener)?;
    accept_loop(listener, handler).await;
    Ok(())
}

fn check_loopback(listener: &TcpListener) -> Result<(), DemoError> {
    match listener.local_addr() {
        Ok(addr) if addr.ip().is_loopback() => Ok(()),
        Ok(addr) => Err(DemoError::NotLoopback(addr)),
        Err(e) => Err(DemoError::Listener(e.to_string())),
    }
}

async fn accept_loop(listener: TcpListener, handler: Handler) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(stream, handler).await {
                        tracing::debug!(error = %e, "demo http server: connection ended");
                    }
                });
            }
            Err(e) => {
                // Transient (an aborted handshake, descriptors exhausted): back
                // off briefly instead of spinning, then accept again.
                tracing::debug!(error = %e, "demo http server: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until `buf` holds at least `n` bytes; false on EOF.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> std::io::Result<bool> {
    while buf.len() < n {
        if stream.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// How reading a chunked body ended.
enum Chunked {
    /// The de-chunked body and how many bytes of `buf` it used.
    Body(Vec<u8>, usize),
    /// The peer closed the connection mid-body.
    Eof,
    /// The body is over [`MAX_BODY`].
    TooLarge,
}

/// Decodes a chunked body (RFC 9112 7.1) starting at `buf[0]`.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Chunked> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf[pos..], b"\r\n") {
                break pos + i;
            }
            if buf.len() - pos > 1024 {
                return Err(std::io::Error::other("chunk size line too long"));
            }
            if stream.read_buf(buf).await? == 0 {
                return Ok(Chunked::Eof);
            }
        };
        let size_line = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let size_text = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer lines (none expected) end with an empty line.
            loop {
                if let Some(i) = find(&buf[pos..], b"\r\n") {
                    let empty = i == 0;
                    pos += i + 2;
                    if empty {
                        return Ok(Chunked::Body(body, pos));
                    }
                } else if stream.read_buf(buf).await? == 0 {
                    return Ok(Chunked::Eof);
                }
            }
        }
        if body.len().saturating_add(size) > MAX_BODY {
            return Ok(Chunked::TooLarge);
        }
        if !fill(stream, buf, pos + size + 2).await? {
            return Ok(Chunked::Eof);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

/// Writes a body-less error answer and asks the caller to close.
async fn refuse(stream: &mut TcpStream, status: StatusCode) -> std::io::Result<()> {
    let line = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    stream.write_all(line.as_bytes()).await
}

/// Serves the requests of one connection, in order, until it closes.
async fn serve_conn(mut stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return refuse(&mut stream, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE).await;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Ok(());
            }
        };
        let mut raw = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut raw);
        if !matches!(
            parsed.parse(&buf[..head_end]),
            Ok(httparse::Status::Complete(_))
        ) {
            return refuse(&mut stream, StatusCode::BAD_REQUEST).await;
        }
        let http10 = parsed.version == Some(0);
        let raw_headers: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect();
        let mut req = Request {
            method: parsed.method.unwrap_or_default().to_owned(),
            target: parsed.path.unwrap_or_default().to_owned(),
            headers: raw_headers
                .iter()
                .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
            raw_headers,
            body: Vec::new(),
        };
        buf.drain(..head_end);
        let chunked = req
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            match read_chunked(&mut stream, &mut buf).await? {
                Chunked::Body(body, used) => {
                    req.body = body;
                    buf.drain(..used);
                }
                Chunked::Eof => return Ok(()),
                Chunked::TooLarge => {
                    return refuse(&mut stream, StatusCode::PAYLOAD_TOO_LARGE).await
                }
            }
        } else if let Some(len) = req.header("content-length") {
            let Ok(len) = len.trim().parse::<usize>() else {
                return refuse(&mut stream, StatusCode::BAD_REQUEST).await;
            };
            if len > MAX_BODY {
                return refuse(&mut stream, StatusCode::PAYLOAD_TOO_LARGE).await;
            }
            if !fill(&mut stream, &mut buf, len).await? {
                return Ok(());
            }
            req.body = buf.drain(..len).collect();
        }
        let close = req.wants_close(http10);
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        match handler(req).await {
            Reply::UpgradeEcho => {
                stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n",
                    )
                    .await?;
                if !buf.is_empty() {
                    stream.write_all(&buf).await?;
                }
                let mut chunk = [0u8; 4096];
                loop {
                    let n = stream.read(&mut chunk).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    stream.write_all(&chunk[..n]).await?;
                }
            }
            Reply::Response(resp) => {
                stream.write_all(&encode(&resp, close, head_only)).await?;
                if close {
                    return Ok(());
                }
            }
        }
    }
}

/// The response on the wire: status line, the handler's headers, our own
/// framing headers, then the body unless the request was `HEAD`.
fn encode(resp: &Response<Vec<u8>>, close: bool, head_only: bool) -> Vec<u8> {
    let status = resp.status();
    let reason = status.canonical_reason().unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", status.as_u16()).into_bytes();
    for (name, value) in resp.headers() {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", resp.body().len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(resp.body());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::SocketAddr;

    /// An echo of what the server parsed: method, target, header lines, body.
    async fn start() -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = handler(|req: Request| async move {
            if req.is_upgrade() {
                return Reply::UpgradeEcho;
            }
            let mut text = format!("{} {}\n", req.method, req.target);
            for (n, v) in &req.headers {
                text.push_str(&format!("{n}={v}\n"));
            }
            text.push_str(&String::from_utf8_lossy(&req.body));
            let mut resp = Response::new(text.into_bytes());
            resp.headers_mut()
                .insert("x-handler", HeaderValue::from_static("yes"));
            Reply::from(resp)
        });
        (addr, spawn(listener, h).unwrap())
    }

    /// Writes `request`, reads until EOF.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the server did not close")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn keep_alive_serves_requests_in_order_and_closes_on_request() {
        let (addr, _task) = start().await;
        let out = exchange(
            addr,
            b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let one = out.find("GET /one").unwrap();
        let two = out.find("POST /two").unwrap();
        let three = out.find("GET /three").unwrap();
        assert!(one < two && two < three, "{out}");
        assert!(out.contains("Content-Length=5\nhello"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{out}");
        assert_eq!(out.matches("connection: close\r\n").count(), 1, "{out}");
        assert!(out.contains("x-handler: yes\r\n"));
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_header_case_is_kept() {
        let (addr, _task) = start().await;
        let out = exchange(
            addr,
            b"POST /c HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\nTransfer-Encoding: chunked\r\n\
Connection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        assert!(out.contains("X-Mixed-Case=v\n"), "{out}");
        assert!(out.ends_with("hello world"), "{out}");
    }

    #[tokio::test]
    async fn head_gets_the_length_but_no_body_and_http10_closes() {
        let (addr, _task) = start().await;
        let out = exchange(addr, b"HEAD /h HTTP/1.0\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        // The length of the body a GET would get ("HEAD /h\n"), and no body.
        assert!(out.contains("content-length: 8\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[tokio::test]
    async fn malformed_heads_and_oversized_bodies_are_refused() {
        let (addr, _task) = start().await;
        let out = exchange(addr, b"NOT HTTP\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let out = exchange(addr, big.as_bytes()).await;
        assert!(
            out.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{out}"
        );
        let out = exchange(addr, b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[tokio::test]
    async fn upgrade_echo_returns_every_byte() {
        let (addr, _task) = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly")
            .await
            .unwrap();
        let mut got = vec![0u8; 0];
        let want_head = "HTTP/1.1 101 Switching Protocols\r\n";
        while !String::from_utf8_lossy(&got).ends_with("early") {
            let mut b = [0u8; 256];
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b))
                .await
                .expect("no echo in time")
                .unwrap();
            assert_ne!(n, 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        assert!(String::from_utf8_lossy(&got).starts_with(want_head));
        s.write_all(&[0, 255]).await.unwrap();
        let mut back = [0u8; 2];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [0, 255]);
    }

    #[tokio::test]
    async fn only_loopback_listeners_are_served() {
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = handler(|_req: Request| async { Reply::from(Response::new(Vec::new())) });
        assert_eq!(
            spawn(listener, h).unwrap_err(),
            DemoError::NotLoopback(addr)
        );
    }

    #[test]
    fn debug_shows_header_names_not_values() {
        let req = Request {
            method: "GET".into(),
            target: "/".into(),
            headers: vec![("Cookie".into(), "_oauth2_proxy=secret-value".into())],
            raw_headers: vec![("Cookie".into(), b"_oauth2_proxy=secret-value".to_vec())],
            body: b"token=abc".to_vec(),
        };
        let shown = format!("{req:?}");
        assert!(shown.contains("Cookie"), "{shown}");
        assert!(
            !shown.contains("secret-value") && !shown.contains("abc"),
            "{shown}"
        );
    }
}
