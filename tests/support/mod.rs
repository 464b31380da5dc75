//! Shared harness for the outside-view integration tests: the real `authgate`
//! binary in a child process, in front of HTTP/1 servers the test runs itself
//! (an echo upstream and the embedded demo IdP), on ephemeral 127.0.0.1 ports.
//!
//! Every test builds its own processes and ports, so tests run in parallel and
//! never share state. Nothing here sleeps-and-hopes: waits poll with deadlines.

pub mod fleet;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use authgate::demo::http_server;
use authgate::demo::idp::{DemoClient, DemoIdp};
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_authgate");
/// The binary the harness runs: [`BIN`], or the file named by
/// `AUTHGATE_TEST_BIN` (to watch a new test fail against an older build).
pub fn bin() -> String {
    std::env::var("AUTHGATE_TEST_BIN").unwrap_or_else(|_| BIN.to_owned())
}
/// Client credentials the in-process IdP registers for authgate.
pub const CLIENT_ID: &str = "authgate";
pub const CLIENT_SECRET: &str = "integration-client-secret";
/// 32 raw bytes; only ever used by these tests.
pub const COOKIE_SECRET: &str = "integration-test-cookie-secret!!";
/// How long a freshly started process may take to answer `/ready` (debug build).
pub const READY_DEADLINE: Duration = Duration::from_secs(60);
/// A fixed RSA key: generating one in a debug build takes many seconds.
const TEST_KEY_PEM: &str = include_str!("test_key.pem");

/// An ext_authz `CheckRequest` as Envoy sends it: `method`, the
/// `:authority` `host`, the request target `path` (query included), scheme
/// http, and `headers` (lower-case names, as Envoy passes them).
pub fn check_request(
    method: impl Into<String>,
    host: impl Into<String>,
    path: impl Into<String>,
    headers: HashMap<String, String>,
) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: method.into(),
                    host: host.into(),
                    path: path.into(),
                    scheme: "http".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The identity headers of the default `headers.identity` list.
pub const IDENTITY: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-preferred-username",
    "x-auth-request-groups",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
];

/// A 127.0.0.1 port nothing listens on right now, for a child process
/// (authgate, Redis) to bind.
///
/// Taken from 20000–29999, not from the OS: the kernel hands out ephemeral
/// ports (32768+ by default) to every outgoing connection too, so a port the
/// OS picked and released could be taken by a test's own client before the
/// child binds it. A per-process counter (starting at a pid-derived offset)
/// never gives the same port twice, and a Redis cluster bus (port + 10000)
/// stays a valid port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id() % 50 * 200;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 10_000, "no free test port left in 20000-29999");
        let port = 20_000 + ((offset + n) % 10_000) as u16;
        if StdListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

/// Polls `probe` until it returns `Some`, panicking with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Test servers on `authgate::demo::http_server` (keep-alive, Content-Length
// and chunked bodies, upgrade echo): an upstream and the IdP.
// ---------------------------------------------------------------------------

/// One request as a test server received it; header names keep their wire case.
pub use authgate::demo::http_server::Request as Seen;
pub use authgate::demo::http_server::{Handler, Reply};

/// A running test server; requests it received are in `seen`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Serves `handler`, recording each request before the handler runs (so a
    /// test can see a request its handler is still holding).
    fn start_on(listener: TcpListener, handler: Handler) -> TestServer {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let recording = http_server::handler(move |req: Seen| {
            record.lock().push(req.clone());
            handler(req)
        });
        let task = http_server::spawn(listener, recording).unwrap();
        TestServer { addr, seen, task }
    }

    /// The upstream: answers JSON `{upstream, method, target, headers}` with
    /// what it received; a target containing `slow` is answered after 1.5 s;
    /// an upgrade request gets 101 and a byte echo.
    pub async fn echo(name: &str) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let name = name.to_owned();
        let handler = http_server::handler(move |req: Seen| {
            let name = name.clone();
            async move {
                if req.is_upgrade() {
                    return Reply::UpgradeEcho;
                }
                if req.target.contains("slow") {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                }
                let body = json!({
                    "upstream": name,
                    "method": req.method,
                    "target": req.target,
                    "headers": req.headers,
                });
                let mut resp = http::Response::new(serde_json::to_vec(&body).unwrap());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Reply::from(resp)
            }
        });
        Self::start_on(listener, handler)
    }

    /// The demo IdP on its own port, announcing `issuer_port` as its
    /// issuer: for a test that puts its own front (e.g. one injecting
    /// faults) on `issuer_port` and relays to this one.
    pub async fn idp_behind(issuer_port: u16) -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        Self::serve_idp(listener, &demo_idp(issuer_port))
    }

    /// The embedded development IdP (`authgate::demo::idp::DemoIdp`) with
    /// users alice/alice (admins, devs) and bob/bob (users), registering
    /// [`CLIENT_ID`] for any loopback redirect URI.
    pub async fn idp() -> TestServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Self::serve_idp(listener, &demo_idp(port))
    }
}

/// The demo IdP of [`TestServer::idp`] for an issuer on `port`, not yet
/// served: a test keeps a clone (to rotate its key) and serves it with
/// [`TestServer::serve_idp`], e.g. only after authgate started.
pub fn demo_idp(port: u16) -> DemoIdp {
    let issuer = url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let key = {
        use rsa::pkcs8::DecodePrivateKey as _;
        rsa::RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PEM).unwrap()
    };
    let client = DemoClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![],
    };
    DemoIdp::new_with_key(issuer, vec![client], key).unwrap()
}

impl TestServer {
    /// Serves `idp` (see [`demo_idp`]) on `listener`.
    pub fn serve_idp(listener: TcpListener, idp: &DemoIdp) -> TestServer {
        Self::start_on(listener, idp.handler())
    }
}

/// The upstream's JSON answer, as a value; panics with the body otherwise.
pub fn echo_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not echo JSON ({e}): {body}"))
}

/// Header values from an echo JSON answer, name matched case-insensitively.
pub fn echoed_header(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|p| p[1].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// The authgate process.
// ---------------------------------------------------------------------------

/// A generated `authgate run` configuration.
pub struct GateConfig {
    pub port: u16,
    pub metrics_port: u16,
    pub idp_port: u16,
    /// (path prefix, upstream port)
    pub upstreams: Vec<(String, u16)>,
    pub shutdown_grace: &'static str,
    /// Extra lines under `server:` (two-space indented), e.g. ext_authz listeners.
    pub server: Vec<String>,
    /// Extra lines under `provider:` (two-space indented).
    pub provider: Vec<String>,
    /// Extra lines under `authorization:` (two-space indented).
    pub authorization: Vec<String>,
}

impl GateConfig {
    pub fn new(idp_port: u16, upstreams: &[(&str, u16)]) -> GateConfig {
        GateConfig {
            port: free_port(),
            metrics_port: free_port(),
            idp_port,
            upstreams: upstreams
                .iter()
                .map(|(p, port)| (p.to_string(), *port))
                .collect(),
            shutdown_grace: "1s",
            server: Vec::new(),
            provider: Vec::new(),
            authorization: vec![
                "  allowed_groups: [admins]".into(),
                "  skip_auth_routes: [\"^/public/\"]".into(),
            ],
        }
    }

    /// Adds both ext_authz listeners, HTTP and gRPC, on free ports to
    /// `server:`; returns their ports `(http, grpc)`.
    pub fn with_ext_authz(&mut self) -> (u16, u16) {
        let (http, grpc) = (free_port(), free_port());
        self.server
            .push(format!("  ext_authz_http: 127.0.0.1:{http}"));
        self.server
            .push(format!("  ext_authz_grpc: 127.0.0.1:{grpc}"));
        (http, grpc)
    }

    pub fn yaml(&self) -> String {
        let lines =
            |extra: &[String]| -> String { extra.iter().map(|l| format!("{l}\n")).collect() };
        let mut s = format!(
            "server:\n  listen: 127.0.0.1:{port}\n  metrics: 127.0.0.1:{metrics}\n  threads: 1\n  shutdown_grace: {grace}\n{server}\
provider:\n  issuer_url: http://127.0.0.1:{idp}\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n{provider}\
cookie:\n  secret: \"{COOKIE_SECRET}\"\n  secure: false\n\
authorization:\n{authorization}",
            port = self.port,
            metrics = self.metrics_port,
            grace = self.shutdown_grace,
            idp = self.idp_port,
            server = lines(&self.server),
            provider = lines(&self.provider),
            authorization = lines(&self.authorization),
        );
        s.push_str("upstreams:\n");
        for (path, port) in &self.upstreams {
            s.push_str(&format!(
                "  - path: {path}\n    url: http://127.0.0.1:{port}\n"
            ));
        }
        s
    }
}

/// The real binary in a child process; killed when dropped.
pub struct Authgate {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Authgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Authgate {
    /// `authgate run --config <generated file>`, waiting for `/ready`.
    pub async fn run(cfg: &GateConfig) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(cfg.yaml().as_bytes())
            .unwrap();
        let args: Vec<String> = vec!["run".into(), "--config".into(), path_str(&path)];
        let mut gate = Self::spawn(dir, &args, cfg.port, cfg.metrics_port);
        gate.wait_ready().await;
        gate
    }

    /// Waits until `/ping` answers 200: the listener is up, nothing more.
    pub async fn wait_ping(&mut self) {
        let client = client();
        let url = self.url("/ping");
        let end = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "authgate exited early ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < end, "authgate never answered /ping");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `authgate demo --port P` (its own IdP and echo upstream), waiting for `/ready`.
    pub async fn demo() -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let args: Vec<String> = vec!["demo".into(), "--port".into(), port.to_string()];
        let mut gate = Self::spawn(dir, &args, port, 0);
        gate.wait_ready().await;
        gate
    }

    /// `authgate run --config <generated file>` without waiting for
    /// `/ready` (for a test whose IdP is not answering yet).
    pub fn start(cfg: &GateConfig) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, cfg.yaml()).unwrap();
        let args: Vec<String> = vec!["run".into(), "--config".into(), path_str(&path)];
        Self::spawn(dir, &args, cfg.port, cfg.metrics_port)
    }

    /// The config file `run`/`run_yaml`/`start` wrote (rewrite it, then
    /// send `SIGHUP` to reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("authgate.yaml")
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain syscall on our own child's pid; no memory involved.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// The process id (to inspect its sockets from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Everything the process wrote so far, stdout then stderr.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default();
        format!("{out}{}", self.stderr())
    }

    fn spawn(dir: tempfile::TempDir, args: &[String], port: u16, metrics_port: u16) -> Authgate {
        Self::spawn_env(dir, args, port, metrics_port, &[])
    }

    fn spawn_env(
        dir: tempfile::TempDir,
        args: &[String],
        port: u16,
        metrics_port: u16,
        env: &[(&str, &str)],
    ) -> Authgate {
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let child = Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Authgate {
            child,
            port,
            metrics_port,
            dir,
        }
    }

    /// What the process wrote to stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Waits for `/ready` to answer 200, then for the metrics to have
    /// counted every probe answered (Pingora counts in its logging phase,
    /// after the answer), so a test's first metrics snapshot is stable.
    async fn wait_ready(&mut self) {
        let client = client();
        let url = self.url("/ready");
        let end = Instant::now() + READY_DEADLINE;
        let mut answered = 0.0;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "authgate exited early ({status}); stderr:\n{}",
                    self.stderr()
                );
            }
            if let Ok(r) = client.get(&url).send().await {
                answered += 1.0;
                if r.status() == 200 {
                    if self.metrics_port != 0 {
                        let probes =
                            r#"authgate_requests_total{decision="skipped",listener="proxy"}"#;
                        // Pingora starts each listener on its own thread: the
                        // metrics one may still be binding.
                        let end = Instant::now() + READY_DEADLINE;
                        loop {
                            let counted = match self.try_metrics().await {
                                Some(m) => metric(&m, probes).unwrap_or(0.0),
                                None => -1.0,
                            };
                            if counted >= answered {
                                break;
                            }
                            if let Some(status) = self.child.try_wait().unwrap() {
                                panic!(
                                    "authgate exited early ({status}); stderr:\n{}",
                                    self.stderr()
                                );
                            }
                            assert!(
                                Instant::now() < end,
                                "metrics on :{} counted {counted} of {answered} probes \
                                 (-1: no answer); stderr:\n{}",
                                self.metrics_port,
                                self.stderr()
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "authgate not ready within {READY_DEADLINE:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Prometheus text on `server.metrics`, or None while nothing
    /// answers 200 there.
    pub async fn try_metrics(&self) -> Option<String> {
        let r = client()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        r.text().await.ok()
    }

    /// The Prometheus text on `server.metrics`.
    pub async fn metrics(&self) -> String {
        let r = client()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// Sends SIGTERM (Pingora's graceful terminate).
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: plain syscall on our own child's pid; no memory involved.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits for the process to exit, panicking after `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "authgate did not exit within {deadline:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The repository's `conf/` directory.
pub fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conf")
}

// ---------------------------------------------------------------------------
// Client side.
// ---------------------------------------------------------------------------

/// A client that never follows redirects, keeps no cookies and ignores any
/// proxy settings in the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Minimal browser cookie jar (one host, names only).
#[derive(Debug, Clone, Default)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    /// Applies every `Set-Cookie` of a response: set, or delete when the value
    /// is empty or `Max-Age` is zero or negative.
    pub fn update(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            let line = v.to_str().unwrap();
            let (pair, attrs) = line.split_once(';').unwrap_or((line, ""));
            let (name, value) = pair.split_once('=').unwrap();
            let expired = attrs.split(';').any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a.strip_prefix("max-age=")
                    .is_some_and(|n| n.parse::<i64>().is_ok_and(|n| n <= 0))
            });
            if value.is_empty() || expired {
                self.0.remove(name.trim());
            } else {
                self.0.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Names of the cookies currently held that start with `prefix`.
    pub fn names_with(&self, prefix: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The session cookies (`_oauth2_proxy` or its chunks `_oauth2_proxy_N`).
    pub fn session_names(&self) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| {
                k.as_str() == "_oauth2_proxy"
                    || k.strip_prefix("_oauth2_proxy_")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .cloned()
            .collect()
    }
}

/// All `Set-Cookie` lines of a response.
pub fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub fn location(resp: &reqwest::Response) -> url::Url {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_str()
        .unwrap();
    url::Url::parse(loc)
        .or_else(|_| url::Url::parse(resp.url().as_str()).unwrap().join(loc))
        .unwrap()
}

pub fn query_param(u: &url::Url, key: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// GET with the jar's cookies and an `Accept` header, updating the jar.
pub async fn get(
    client: &reqwest::Client,
    jar: &mut Jar,
    url: &str,
    accept: &str,
) -> reqwest::Response {
    let mut req = client.get(url).header("accept", accept);
    if !jar.0.is_empty() {
        req = req.header("cookie", jar.header());
    }
    let resp = req.send().await.unwrap();
    jar.update(&resp);
    resp
}

/// The first half of a browser login: the protected page's 302 to the IdP.
pub async fn start_login(client: &reqwest::Client, jar: &mut Jar, page: &str) -> url::Url {
    let r = get(client, jar, page, "text/html").await;
    assert_eq!(r.status(), 302, "expected a redirect to the IdP for {page}");
    location(&r)
}

/// At the IdP: GET the login page, submit its form with the given
/// credentials, return the IdP's answer (302 to the callback on success).
pub async fn submit_idp_form(
    client: &reqwest::Client,
    authorize: &url::Url,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let page = client
        .get(authorize.as_str())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "IdP login page");
    let html = page.text().await.unwrap();
    let action = regex::Regex::new(r#"<form method="post" action="([^"]+)""#)
        .unwrap()
        .captures(&html)
        .unwrap_or_else(|| panic!("no form on the IdP page: {html}"))[1]
        .to_owned();
    let hidden =
        regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)">"#).unwrap();
    let mut form: Vec<(String, String)> = hidden
        .captures_iter(&html)
        .map(|c| {
            (
                c[1].to_owned(),
                html_escape::decode_html_entities(&c[2]).into_owned(),
            )
        })
        .collect();
    form.push(("username".into(), user.into()));
    form.push(("password".into(), password.into()));
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    client
        .post(authorize.join(&action).unwrap())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A whole browser login for `page`: returns the jar holding the session and
/// the callback's redirect target.
pub async fn login(
    client: &reqwest::Client,
    jar: &mut Jar,
    page: &str,
    user: &str,
) -> reqwest::Response {
    let authorize = start_login(client, jar, page).await;
    let callback = login_at_idp(client, &authorize, user).await;
    get(client, jar, callback.as_str(), "text/html").await
}

/// `user` (password = name) signs in at the IdP for an authorize URL;
/// returns where the IdP sends the browser back (the callback).
pub async fn login_at_idp(client: &reqwest::Client, authorize: &url::Url, user: &str) -> url::Url {
    let idp = submit_idp_form(client, authorize, user, user).await;
    assert_eq!(idp.status(), 302, "IdP accepted {user}");
    location(&idp)
}

/// An ID token for `user`, obtained as the relying party itself would
/// (authorization code at the IdP, then the token endpoint), to present as
/// a bearer token.
pub async fn id_token(idp: &TestServer, redirect_uri: &str, user: &str) -> String {
    let issuer = format!("http://127.0.0.1:{}", idp.port());
    let mut authorize = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email profile groups")
        .append_pair("state", "test-state")
        .append_pair("nonce", "test-nonce");
    let c = client();
    let back = login_at_idp(&c, &authorize, user).await;
    let code = query_param(&back, "code").expect("a code from the IdP");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("client_id", CLIENT_ID)
        .append_pair("client_secret", CLIENT_SECRET)
        .finish();
    let resp = c
        .post(format!("{issuer}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "token endpoint");
    let json: Value = resp.json().await.unwrap();
    json["id_token"].as_str().unwrap().to_owned()
}

/// `name=value` of a `Set-Cookie` line.
pub fn cookie_pair(set_cookie: &str) -> String {
    let pair = set_cookie
        .split_once(';')
        .map_or(set_cookie, |(pair, _)| pair);
    pair.trim().to_owned()
}

/// One HTTP/1.1 exchange over a fresh TCP connection with the bytes given
/// verbatim (header case preserved, non-UTF-8 allowed); returns (status,
/// full response text).
pub async fn raw_exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_ref()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("raw exchange timed out")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in: {text}"));
    (status, text)
}

/// A GET with exactly the given headers (HTTP clients add their own, e.g.
/// `Accept: */*`; Envoy forwards only what the provider config lists).
/// Returns the status and the response headers.
pub async fn raw_get(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap) {
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("connection: close\r\n\r\n");
    let (status, text) = raw_exchange(addr, &req).await;
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut map = http::HeaderMap::new();
    for line in head.split("\r\n").skip(1) {
        let (k, v) = line.split_once(':').unwrap();
        map.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            http::HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    (status, map)
}

/// The value of `name{labels} VALUE` in Prometheus text, if exported.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

impl Authgate {
    /// `authgate run` with `cfg`'s ports but the given YAML (e.g. `cfg.yaml()`
    /// with a `session:` section added), waiting for `/ready`.
    pub async fn run_yaml(cfg: &GateConfig, yaml: &str) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let args: Vec<String> = vec!["run".into(), "--config".into(), path_str(&path)];
        let mut gate = Self::spawn(dir, &args, cfg.port, cfg.metrics_port);
        gate.wait_ready().await;
        gate
    }

    /// `authgate run` with `cfg`'s ports, the given YAML and extra
    /// environment variables (e.g. `SSL_CERT_FILE`), not waiting for
    /// `/ready`; call [`Authgate::wait_until_ready`] for that.
    pub fn start_yaml_env(cfg: &GateConfig, yaml: &str, env: &[(&str, &str)]) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let args: Vec<String> = vec!["run".into(), "--config".into(), path_str(&path)];
        Self::spawn_env(dir, &args, cfg.port, cfg.metrics_port, env)
    }

    /// Waits for `/ready` as [`Authgate::run_yaml`] does (a started process).
    pub async fn wait_until_ready(&mut self) {
        self.wait_ready().await;
    }

    /// `authgate --log-format json run` with `cfg`'s ports but the given
    /// YAML, waiting for `/ready`: stderr is one JSON object per line.
    pub async fn run_yaml_json_logs(cfg: &GateConfig, yaml: &str) -> Authgate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authgate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let args: Vec<String> = vec![
            "--log-format".into(),
            "json".into(),
            "run".into(),
            "--config".into(),
            path_str(&path),
        ];
        let mut gate = Self::spawn(dir, &args, cfg.port, cfg.metrics_port);
        gate.wait_ready().await;
        gate
    }
}

/// An OIDC Back-Channel Logout 1.0 logout token for `sub` and/or `sid`,
/// signed as the IdP of [`TestServer::idp`] / [`demo_idp`] on `idp_port`
/// would (same key, its published `kid`).
pub async fn logout_token(idp_port: u16, sub: Option<&str>, sid: Option<&str>) -> String {
    let jwks: Value = client()
        .get(format!("http://127.0.0.1:{idp_port}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
    let mut claims = json!({
        "iss": format!("http://127.0.0.1:{idp_port}"),
        "aud": CLIENT_ID,
        "iat": authgate::clock::unix_now(),
        "jti": authgate::domain::random::token(16),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    header.typ = Some("logout+jwt".into());
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(TEST_KEY_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// POSTs a logout token to `/oauth2/backchannel_logout`; the status.
pub async fn backchannel_logout(gate: &Authgate, token: &str) -> u16 {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("logout_token", token)
        .finish();
    client()
        .post(gate.url("/oauth2/backchannel_logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The claims of a JWT's payload, unverified (a test reading what the IdP
/// issued, e.g. the `sid` of an ID token the upstream received).
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}
