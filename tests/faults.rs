//! Faults injected against the real binary: an IdP that is slow, answers
//! HTML, garbage or 500, or drops the connection (on discovery, JWKS and the
//! token endpoint); an upstream that resets mid-response or never answers;
//! slowloris clients; thousands of idle keep-alive connections. Each test
//! checks the request concerned gets a clear 5xx (or is cut off), the
//! process stays up, other users are served promptly, and nothing authgate
//! printed contains a token, a cookie value or the client secret.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

/// authgate's deadline for a connection's first request head
/// (`src/proxy/head_deadline.rs`).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// authgate's per-call IdP timeout (`src/oidc/http.rs`).
const IDP_TIMEOUT: Duration = Duration::from_secs(10);
/// authgate's upstream read timeout (`src/proxy/upstream.rs`).
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// "Served promptly": an unaffected user's request completes within this.
const PROMPT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// A faulty IdP: a front on its own port that relays to the demo IdP (whose
// issuer is the front), except on the routes told to fail.
// ---------------------------------------------------------------------------

/// What the IdP does wrong on a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Answers after authgate's timeouts have run out.
    Slow,
    /// 200 with an HTML page (a login portal, a proxy's error page).
    Html,
    /// Bytes that are not HTTP at all.
    Garbage,
    /// 500 Internal Server Error.
    Status500,
    /// Closes the connection without answering.
    Close,
}

const FAULTS: [Fault; 5] = [
    Fault::Html,
    Fault::Garbage,
    Fault::Status500,
    Fault::Close,
    Fault::Slow,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Route {
    Discovery,
    Jwks,
    Token,
    Other,
}

fn route_of(path: &str) -> Route {
    match path {
        "/.well-known/openid-configuration" => Route::Discovery,
        "/jwks" => Route::Jwks,
        "/token" => Route::Token,
        _ => Route::Other,
    }
}

struct FaultyIdp {
    port: u16,
    faults: Arc<Mutex<HashMap<Route, Fault>>>,
    /// How many requests each route has had answered with a fault.
    faulted: Arc<Mutex<HashMap<Route, usize>>>,
    /// Every response the real IdP gave through the front (to find tokens).
    relayed: Arc<Mutex<Vec<u8>>>,
    _idp: TestServer,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultyIdp {
    async fn start() -> FaultyIdp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let idp = TestServer::idp_behind(port).await;
        let faults = Arc::new(Mutex::new(HashMap::new()));
        let faulted = Arc::new(Mutex::new(HashMap::new()));
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let (f, n, r, inner) = (faults.clone(), faulted.clone(), relayed.clone(), idp.addr);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (f, n, r) = (f.clone(), n.clone(), r.clone());
                tokio::spawn(async move {
                    // Bounded: no connection of this test lives longer.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        serve_front(conn, inner, f, n, r),
                    )
                    .await;
                });
            }
        });
        FaultyIdp {
            port,
            faults,
            faulted,
            relayed,
            _idp: idp,
            task,
        }
    }

    fn set(&self, route: Route, fault: Option<Fault>) {
        let mut f = self.faults.lock();
        match fault {
            Some(fault) => f.insert(route, fault),
            None => f.remove(&route),
        };
    }

    fn faulted(&self, route: Route) -> usize {
        self.faulted.lock().get(&route).copied().unwrap_or(0)
    }

    /// The token values the IdP handed out through the front.
    fn tokens(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.relayed.lock()).into_owned();
        let re = regex::Regex::new(r#""(?:access_token|id_token|refresh_token)"\s*:\s*"([^"]+)""#)
            .unwrap();
        re.captures_iter(&text).map(|c| c[1].to_owned()).collect()
    }
}

/// Reads a request head (at most 64 KiB); returns it and any bytes after it.
async fn read_head(conn: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
    }
    None
}

async fn serve_front(
    mut conn: TcpStream,
    inner: SocketAddr,
    faults: Arc<Mutex<HashMap<Route, Fault>>>,
    faulted: Arc<Mutex<HashMap<Route, usize>>>,
    relayed: Arc<Mutex<Vec<u8>>>,
) {
    let Some((head, rest)) = read_head(&mut conn).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let route = route_of(target.split('?').next().unwrap_or("/"));
    let fault = faults.lock().get(&route).copied();
    if let Some(fault) = fault {
        *faulted.lock().entry(route).or_insert(0) += 1;
        match fault {
            Fault::Slow => {
                tokio::time::sleep(IDP_TIMEOUT + Duration::from_secs(5)).await;
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            }
            Fault::Html => {
                let body = "<!doctype html><html><body><h1>Please sign in to the corporate portal</h1></body></html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            }
            Fault::Garbage => {
                let _ = conn
                    .write_all(b"\x16\x03\x01\x02\x00\xff\xfe garbage, not HTTP \x00\x01\r\n\r\n")
                    .await;
            }
            Fault::Status500 => {
                let _ = conn
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
            Fault::Close => {}
        }
        return;
    }
    // Relay one request (the IdP is told to close after it, so every
    // request of authgate's comes through here and can be faulted).
    let Ok(up) = TcpStream::connect(inner).await else {
        return;
    };
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
    let mut out = head[..line_end].to_vec();
    out.extend_from_slice(b"connection: close\r\n");
    out.extend_from_slice(&head[line_end..]);
    out.extend_from_slice(&rest);
    let (mut up_r, mut up_w) = up.into_split();
    let (mut c_r, mut c_w) = conn.into_split();
    if up_w.write_all(&out).await.is_err() {
        return;
    }
    let body = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut c_r, &mut up_w).await;
    });
    let mut chunk = [0u8; 8192];
    loop {
        match up_r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                relayed.lock().extend_from_slice(&chunk[..n]);
                if c_w.write_all(&chunk[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = c_w.shutdown().await;
    body.abort();
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

/// Asserts that nothing authgate printed contains one of `secrets`, and that
/// it printed something (so the check cannot pass on an empty capture).
fn assert_no_secrets(gate: &Authgate, secrets: &[String]) {
    let out = gate.output();
    assert!(!out.is_empty(), "no output captured from authgate");
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !out.contains(s.as_str()),
            "authgate's output contains a secret value starting {:?}:\n{out}",
            &s[..6]
        );
    }
}

fn fixed_secrets() -> Vec<String> {
    vec![CLIENT_SECRET.to_owned(), COOKIE_SECRET.to_owned()]
}

/// Every cookie value a jar holds.
fn cookie_values(jar: &Jar) -> Vec<String> {
    jar.0.values().cloned().collect()
}

/// `GET url` must answer `want` within `PROMPT`.
async fn promptly(c: &reqwest::Client, url: &str, jar: Option<&Jar>, want: u16) {
    let started = Instant::now();
    let mut req = c.get(url).header("accept", "text/html");
    if let Some(jar) = jar {
        req = req.header("cookie", jar.header());
    }
    let r = tokio::time::timeout(PROMPT, req.send())
        .await
        .unwrap_or_else(|_| panic!("{url} took longer than {PROMPT:?}"))
        .unwrap();
    assert_eq!(r.status(), want, "{url}");
    assert!(started.elapsed() < PROMPT);
}

/// Runs `promptly` every 200 ms while `fut` runs; returns `fut`'s output.
async fn others_served_during<T>(
    c: &reqwest::Client,
    url: &str,
    jar: Option<&Jar>,
    want: u16,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(fut);
    let mut checks = 0u32;
    // Bounded by the caller's fut, which itself is bounded by a timeout.
    loop {
        tokio::select! {
            out = &mut fut => {
                // And once more after it, for faults that end at once.
                promptly(c, url, jar, want).await;
                eprintln!("{checks} prompt answers while the fault lasted");
                return out;
            }
            _ = async {
                promptly(c, url, jar, want).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            } => checks += 1,
        }
    }
}

/// A browser login for alice through the faulty IdP; returns the jar.
async fn alice_logs_in(c: &reqwest::Client, gate: &Authgate) -> Jar {
    let mut jar = Jar::default();
    let r = login(c, &mut jar, &gate.url("/dash"), "alice").await;
    assert_eq!(r.status(), 302, "callback redirects home");
    let r = get(c, &mut jar, &gate.url("/dash"), "text/html").await;
    assert_eq!(r.status(), 200);
    jar
}

// ---------------------------------------------------------------------------
// The IdP.
// ---------------------------------------------------------------------------

/// authgate starts while `route` fails in each way in turn: it stays up,
/// answers `/ping`, and a browser gets 503 (not a hang, not a 200); once
/// the IdP is healed it becomes ready and alice signs in.
async fn idp_fault_before_discovery(route: Route) {
    let idp = FaultyIdp::start().await;
    let up = TestServer::echo("app").await;
    idp.set(route, Some(FAULTS[0]));
    let cfg = GateConfig::new(idp.port, &[("/", up.port())]);
    let mut gate = Authgate::start(&cfg);
    let c = client();
    eventually(READY_DEADLINE, "authgate answers /ping", || async {
        let r = c.get(gate.url("/ping")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    for fault in FAULTS {
        idp.set(route, Some(fault));
        let before = idp.faulted(route);
        // authgate's own probes (or an on-demand discovery) hit the fault.
        eventually(
            Duration::from_secs(30),
            "a probe meets the fault",
            || async { (idp.faulted(route) > before).then_some(()) },
        )
        .await;
        let started = Instant::now();
        let r = c
            .get(gate.url("/dash"))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{fault:?} on {route:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{fault:?} on {route:?}: the 503 took {:?}",
            started.elapsed()
        );
        promptly(&c, &gate.url("/ping"), None, 200).await;
        let r = c.get(gate.url("/ready")).send().await.unwrap();
        assert_eq!(r.status(), 503, "not ready while {fault:?} on {route:?}");
        assert!(gate.is_running(), "authgate exited on {fault:?}");
    }
    idp.set(route, None);
    eventually(
        Duration::from_secs(30),
        "ready once the IdP heals",
        || async {
            let r = c.get(gate.url("/ready")).send().await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    let jar = alice_logs_in(&c, &gate).await;
    assert!(gate.is_running());
    let mut secrets = fixed_secrets();
    secrets.extend(cookie_values(&jar));
    secrets.extend(idp.tokens());
    assert!(!idp.tokens().is_empty(), "the login's tokens were seen");
    assert_no_secrets(&gate, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_answering_slow_html_garbage_500_or_closing_gives_503_until_it_heals() {
    idp_fault_before_discovery(Route::Discovery).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_answering_slow_html_garbage_500_or_closing_gives_503_until_it_heals() {
    idp_fault_before_discovery(Route::Jwks).await;
}

/// The token endpoint fails in each way while bob signs in: his callback
/// gets a 5xx (within the IdP timeout), alice's session keeps working
/// promptly all the while, and a sign-in after the IdP heals succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_fails_only_that_sign_in_with_a_5xx() {
    let idp = FaultyIdp::start().await;
    let up = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port, &[("/", up.port())]);
    cfg.authorization = vec!["  allowed_groups: [admins, users]".into()];
    let mut gate = Authgate::run(&cfg).await;
    let c = client();
    let alice = alice_logs_in(&c, &gate).await;
    let mut secrets = fixed_secrets();
    secrets.extend(cookie_values(&alice));
    for fault in FAULTS {
        let mut jar = Jar::default();
        let authorize = start_login(&c, &mut jar, &gate.url("/dash")).await;
        let callback = login_at_idp(&c, &authorize, "bob").await;
        secrets.extend(query_param(&callback, "code"));
        secrets.extend(cookie_values(&jar));
        idp.set(Route::Token, Some(fault));
        let started = Instant::now();
        let r = others_served_during(
            &c,
            &gate.url("/dash"),
            Some(&alice),
            200,
            tokio::time::timeout(
                IDP_TIMEOUT + Duration::from_secs(5),
                get(&c, &mut jar, callback.as_str(), "text/html"),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the callback hung"));
        assert!(
            r.status().is_server_error(),
            "{fault:?}: callback answered {}",
            r.status()
        );
        assert!(jar.session_names().is_empty(), "{fault:?}: no session");
        assert!(idp.faulted(Route::Token) > 0);
        assert!(gate.is_running(), "authgate exited on {fault:?}");
        eprintln!(
            "token endpoint {fault:?}: {} after {:?}",
            r.status(),
            started.elapsed()
        );
        idp.set(Route::Token, None);
    }
    let jar = alice_logs_in(&c, &gate).await;
    secrets.extend(cookie_values(&jar));
    secrets.extend(idp.tokens());
    assert!(idp.tokens().len() >= 2, "both logins' tokens were seen");
    assert_no_secrets(&gate, &secrets);
    assert!(
        gate.output().contains("sign-in callback failed"),
        "the failures were logged"
    );
}

// ---------------------------------------------------------------------------
// The upstream.
// ---------------------------------------------------------------------------

/// An upstream on raw TCP: `/public/reset-head` resets after reading the
/// request, `/public/reset-body` resets after half a body, `/public/never`
/// never answers (the connection is held for up to 200 s).
async fn broken_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Some((head, _)) = read_head(&mut conn).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                if target.starts_with("/public/reset-body") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n")
                        .await;
                    let _ = conn.write_all(&[b'x'; 20_000]).await;
                    let _ = conn.flush().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else if target.starts_with("/public/never") {
                    tokio::time::sleep(Duration::from_secs(200)).await;
                    return;
                }
                // Linger 0: close() sends RST instead of FIN.
                #[allow(deprecated)]
                let _ = conn.set_linger(Some(Duration::ZERO));
                drop(conn);
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_resetting_before_or_mid_response_fails_only_that_request() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let (bad, task) = broken_upstream().await;
    let cfg = GateConfig::new(
        idp.port(),
        &[("/", app.port()), ("/public/reset", bad.port())],
    );
    let mut gate = Authgate::run(&cfg).await;
    let c = client();
    for _ in 0..3 {
        // Reset before any byte of the answer: a clear 502.
        let r = c.get(gate.url("/public/reset-head")).send().await.unwrap();
        assert_eq!(r.status(), 502);
        promptly(&c, &gate.url("/public/ok"), None, 200).await;

        // Reset after the head went out: the client must see the answer
        // fail, never a body it could take for complete.
        match c.get(gate.url("/public/reset-body")).send().await {
            Err(_) => {}
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => {
                assert_eq!(r.status(), 200);
                match r.bytes().await {
                    Err(_) => {}
                    Ok(b) => panic!(
                        "a truncated body ({} of 100000 bytes) looked complete",
                        b.len()
                    ),
                }
            }
        }
        promptly(&c, &gate.url("/public/ok"), None, 200).await;
    }
    assert!(gate.is_running());
    assert_no_secrets(&gate, &fixed_secrets());
    task.abort();
}

/// An upstream that accepts and never answers: that request ends in a 5xx
/// at authgate's upstream read timeout (120 s) while everyone else is
/// served promptly all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_answers_gets_a_5xx_at_the_read_timeout_and_blocks_no_one() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let (bad, task) = broken_upstream().await;
    let cfg = GateConfig::new(
        idp.port(),
        &[("/", app.port()), ("/public/never", bad.port())],
    );
    let mut gate = Authgate::run(&cfg).await;
    let c = client();
    let patient = reqwest::Client::builder()
        .no_proxy()
        .timeout(UPSTREAM_READ_TIMEOUT + Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let hung = async {
        let a = patient.get(gate.url("/public/never")).send();
        let b = patient.get(gate.url("/public/never/2")).send();
        let (a, b) = futures::join!(a, b);
        (a.unwrap().status(), b.unwrap().status())
    };
    let (a, b) = others_served_during(&c, &gate.url("/public/ok"), None, 200, hung).await;
    let took = started.elapsed();
    assert!(a.is_server_error() && b.is_server_error(), "{a} {b}");
    assert!(
        took >= UPSTREAM_READ_TIMEOUT - Duration::from_secs(5),
        "answered before the read timeout: {took:?}"
    );
    eprintln!("never-answering upstream: {a} after {took:?}");
    assert!(gate.is_running());
    assert_no_secrets(&gate, &fixed_secrets());
    task.abort();
}

// ---------------------------------------------------------------------------
// Clients: slowloris and idle connections.
// ---------------------------------------------------------------------------

/// Whether authgate closed `conn` (EOF, reset, or a final answer and EOF)
/// within `within`, writing `trickle` one byte every 500 ms meanwhile.
async fn closed_by_peer(mut conn: TcpStream, trickle: &[u8], within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let mut i = 0;
    while started.elapsed() < within {
        if i < trickle.len() && conn.write_all(&trickle[i..=i]).await.is_err() {
            return Some(started.elapsed());
        }
        i += 1;
        match tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // An answer (e.g. 408): keep reading until the close.
            Ok(Ok(_)) => {}
        }
    }
    None
}

/// Slowloris: clients that trickle a request head one byte at a time (or
/// send only part of one, or nothing). Everyone else is served promptly
/// meanwhile, and authgate closes each such connection once its head is
/// overdue instead of holding it for as long as bytes keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_cut_off_at_the_head_deadline_while_others_are_served() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", app.port())])).await;
    let c = client();
    // A head that never ends: each byte arrives well inside any per-read
    // timeout, so only a deadline on the whole head stops it.
    let endless: Vec<u8> = b"GET /dash HTTP/1.1\r\nHost: a\r\nX-Slow: "
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'a', 200))
        .collect();
    let kinds: [&[u8]; 3] = [&endless, b"GET / HT", b""];
    let within = HEAD_TIMEOUT + Duration::from_secs(5);
    let mut conns = Vec::new();
    for kind in kinds {
        for _ in 0..20 {
            conns.push((kind, TcpStream::connect(gate.addr()).await.unwrap()));
        }
    }
    let cut = futures::future::join_all(
        conns
            .into_iter()
            .map(|(kind, conn)| async move { closed_by_peer(conn, kind, within).await }),
    );
    let cut = others_served_during(&c, &gate.url("/public/x"), None, 200, cut).await;
    let open: Vec<usize> = (0..kinds.len())
        .map(|k| {
            cut[k * 20..(k + 1) * 20]
                .iter()
                .filter(|t| t.is_none())
                .count()
        })
        .collect();
    assert_eq!(
        open,
        [0, 0, 0],
        "connections still open after {within:?}, per kind (trickling, partial, silent)"
    );
    for (i, t) in cut.iter().flatten().enumerate() {
        assert!(
            *t >= HEAD_TIMEOUT - Duration::from_secs(1),
            "connection {i} cut before the deadline: {t:?}"
        );
    }
    promptly(&c, &gate.url("/public/x"), None, 200).await;
    assert_no_secrets(&gate, &fixed_secrets());
}

/// Raises this process's open-file soft limit to at least `n` (the child
/// inherits it); a no-op when it already is.
fn ensure_nofile(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            assert!(
                lim.rlim_max >= n,
                "hard open-file limit {} < {n}",
                lim.rlim_max
            );
            lim.rlim_cur = n;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// One `GET path` on an open keep-alive connection; returns the status.
async fn keep_alive_get(conn: &mut TcpStream, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let (head, mut body) = tokio::time::timeout(Duration::from_secs(20), read_head(conn))
        .await
        .expect("answer in time")
        .expect("an answer");
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut chunk = [0u8; 1024];
    while body.len() < len {
        let n = conn.read(&mut chunk).await.unwrap();
        assert_ne!(n, 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    assert!(
        !text.contains("connection: close"),
        "keep-alive refused: {text}"
    );
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 2,000 keep-alive connections, each having made one request, sit idle:
/// a new client is still served promptly, the idle ones still work, and
/// the process is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_keep_alive_connections_do_not_stop_a_new_client() {
    const N: usize = 2000;
    ensure_nofile(4 * N as u64 + 1024);
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let mut gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", app.port())])).await;
    let addr = gate.addr();
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = futures::stream::iter(0..N)
        .map(|_| async move {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            assert_eq!(keep_alive_get(&mut conn, "/ping").await, 200);
            conn
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let opened = started.elapsed();
    assert_eq!(idle.len(), N);
    let c = client();
    for _ in 0..5 {
        promptly(&c, &gate.url("/public/x"), None, 200).await;
        promptly(&c, &gate.url("/ready"), None, 200).await;
    }
    // Idle connections remain usable.
    for conn in idle.iter_mut().step_by(100) {
        assert_eq!(keep_alive_get(conn, "/public/again").await, 200);
    }
    eprintln!("{N} keep-alive connections opened and used in {opened:?}");
    assert!(gate.is_running());
    assert_no_secrets(&gate, &fixed_secrets());
}

/// The head deadline covers only a connection's first head: an HTTP/1
/// keep-alive connection and an h2c (prior knowledge) connection, each
/// idle for longer than the deadline after their first request, still
/// serve the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_idle_past_the_head_deadline_after_a_request_keep_working() {
    let idp = TestServer::idp().await;
    let app = TestServer::echo("app").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", app.port())])).await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = h2.get(gate.url("/public/h2")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let mut h1 = TcpStream::connect(gate.addr()).await.unwrap();
    assert_eq!(keep_alive_get(&mut h1, "/public/h1").await, 200);

    tokio::time::sleep(HEAD_TIMEOUT + Duration::from_secs(2)).await;

    assert_eq!(keep_alive_get(&mut h1, "/public/h1-again").await, 200);
    let r = h2.get(gate.url("/public/h2-again")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_no_secrets(&gate, &fixed_secrets());
}
