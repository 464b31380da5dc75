//! Every listener bounds the time to read a request head, against the real
//! binary: the proxy (`listen`), the ext_authz HTTP listener and the
//! metrics listener each cut off a client that trickles a head, on a new
//! connection and on the second request of a kept-alive connection (a
//! client that idles, then starts a head and never finishes it), within
//! the deadline plus a margin, while another client is served meanwhile.
//! An idle kept-alive connection itself is not a head: it is still served
//! after idling past the deadline (`src/proxy/head_deadline.rs`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::*;

/// authgate's request-head deadline (`src/proxy/head_deadline.rs`).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack for a loaded 2-core machine on top of the deadline.
const MARGIN: Duration = Duration::from_secs(5);
/// "Served promptly": another client's request completes within this.
const PROMPT: Duration = Duration::from_secs(2);

/// A head that never ends: each byte comes well inside any per-read
/// timeout, so only a deadline on the whole head stops it.
fn endless_head() -> Vec<u8> {
    b"GET /public/slow HTTP/1.1\r\nHost: a\r\nX-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 200))
        .collect()
}

/// Reads one response (head and `Content-Length` body) from `conn`;
/// returns its status. Panics when the connection closes or refuses
/// keep-alive.
async fn read_response(conn: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "closed before a response");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(
        !head.contains("connection: close"),
        "keep-alive refused: {head}"
    );
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A kept-alive connection that has made one request (`GET path`).
async fn after_one_request(addr: SocketAddr, path: &str) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), read_response(&mut conn))
        .await
        .expect("first answer in time");
    assert!(status < 500, "first request answered {status}");
    conn
}

/// Trickles `head` one byte every 250 ms; returns how long after the first
/// byte the peer closed (EOF, reset, or an answer then EOF), or `None`
/// when it was still open after `within`.
async fn trickle_until_closed(
    mut conn: TcpStream,
    head: &[u8],
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut i = 0;
    while started.elapsed() < within {
        if i < head.len() && conn.write_all(&head[i..=i]).await.is_err() {
            return Some(started.elapsed());
        }
        i += 1;
        match tokio::time::timeout(Duration::from_millis(250), conn.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // e.g. a 408: read on until the close
        }
    }
    None
}

/// Runs `check` (another client's request, which must succeed within
/// `PROMPT`) every 200 ms while `fut` runs; returns `fut`'s output and how
/// many checks passed.
async fn others_served_during<T, C, Fut>(
    check: C,
    fut: impl std::future::Future<Output = T>,
) -> (T, u32)
where
    C: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    tokio::pin!(fut);
    let mut served = 0;
    loop {
        tokio::select! {
            out = &mut fut => return (out, served),
            _ = async {
                tokio::time::timeout(PROMPT, check())
                    .await
                    .expect("another client was not served promptly");
                tokio::time::sleep(Duration::from_millis(200)).await;
            } => served += 1,
        }
    }
}

/// On the listener at `addr`, concurrently: a slowloris on a new
/// connection and one on the second request of a kept-alive connection
/// are both cut within the deadline (plus `MARGIN`, and not before it);
/// a kept-alive connection idle past the deadline is still served; and
/// `check` (another client) keeps being served meanwhile.
async fn listener_bounds_every_head<C, Fut>(addr: SocketAddr, path: &str, check: C)
where
    C: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let head = endless_head();
    let within = HEAD_TIMEOUT + MARGIN;
    let first = async {
        let conn = TcpStream::connect(addr).await.unwrap();
        trickle_until_closed(conn, &head, within).await
    };
    let second = async {
        let conn = after_one_request(addr, path).await;
        // Idle a while first: the idle time is not the head's.
        tokio::time::sleep(Duration::from_secs(3)).await;
        trickle_until_closed(conn, &head, within).await
    };
    let idle = async {
        let mut conn = after_one_request(addr, path).await;
        tokio::time::sleep(HEAD_TIMEOUT + Duration::from_secs(2)).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(20), read_response(&mut conn))
            .await
            .expect("answer after idling")
    };
    let ((first, second, idle_status), served) =
        others_served_during(check, async { tokio::join!(first, second, idle) }).await;
    let first = first.unwrap_or_else(|| panic!("first-head slowloris still open after {within:?}"));
    let second =
        second.unwrap_or_else(|| panic!("second-head slowloris still open after {within:?}"));
    for (which, t) in [("first", first), ("second", second)] {
        assert!(
            t >= HEAD_TIMEOUT - Duration::from_secs(1),
            "{which} head cut before the deadline: {t:?}"
        );
    }
    assert!(idle_status < 500, "idle keep-alive answered {idle_status}");
    assert!(served >= 10, "only {served} checks of another client ran");
    eprintln!("cut after {first:?} (first head), {second:?} (second head); {served} other requests served");
}

async fn gate_with_ext_authz_http() -> (Authgate, TestServer, TestServer, SocketAddr) {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let http_port = free_port();
    let mut cfg = GateConfig::new(idp.port(), &[("/", app.port())]);
    cfg.server = vec![format!("  ext_authz_http: 127.0.0.1:{http_port}")];
    let gate = Authgate::run(&cfg).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    (gate, idp, app, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_cuts_a_slowloris_on_any_request_of_a_connection_and_keeps_idle_keep_alive() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", app.port())])).await;
    let c = client();
    let url = gate.url("/public/other");
    listener_bounds_every_head(gate.addr(), "/public/x", || async {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
    assert!(gate.port > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ext_authz_http_listener_cuts_a_slowloris_on_any_request_and_keeps_idle_keep_alive() {
    let (gate, _idp, _app, check_addr) = gate_with_ext_authz_http().await;
    let c = client();
    let url = format!("http://{check_addr}/public/other");
    listener_bounds_every_head(check_addr, "/public/x", || async {
        // A skip route: Envoy's allow is exactly 200.
        let r = c.get(&url).header("host", "app.test").send().await.unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
    drop(gate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_cuts_a_slowloris_on_any_request_and_keeps_idle_keep_alive() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", app.port())])).await;
    let metrics = SocketAddr::from(([127, 0, 0, 1], gate.metrics_port));
    let c = client();
    let url = gate.url("/public/other");
    listener_bounds_every_head(metrics, "/metrics", || async {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
}
