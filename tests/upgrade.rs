//! Zero-downtime binary upgrade (issue 10): `authgate run --upgrade` started
//! beside a running authgate takes over its listening sockets through
//! `server.upgrade_sock`, `SIGQUIT` makes the old one hand them over and
//! drain. A recording client keeps sending on all three listeners (proxy,
//! ext_authz HTTP, ext_authz gRPC), on kept-alive connections and on a new
//! connection per request, the whole time; every request it sent must have
//! been answered, none refused or reset.
//!
//! Also the recording client itself, which `tests/shutdown.rs` shares.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::support::{self, Authgate, GateConfig, TestServer};

// ---------------------------------------------------------------------------
// The recording client.
// ---------------------------------------------------------------------------

/// What happened to the requests of one kind of traffic.
#[derive(Default)]
pub struct Record {
    /// Requests sent (a retry is not a new request).
    pub sent: AtomicU64,
    /// Requests answered with the expected status.
    pub answered: AtomicU64,
    /// A new connection refused (nothing sent).
    pub refused: AtomicU64,
    /// A new connection, connected, then reset or closed before any byte
    /// of the answer: the kernel had completed it, but the listener closed
    /// with it still in the accept queue.
    pub unaccepted: AtomicU64,
    /// Every other outcome, described: a reset, an unexpected status, a
    /// connection closed mid-answer.
    pub failures: Mutex<Vec<String>>,
}

impl Record {
    fn fail(&self, what: String) {
        self.failures.lock().push(what);
    }

    /// `sent`, `answered`, `refused`, failures (an unaccepted connection
    /// listed as one).
    pub fn summary(&self) -> (u64, u64, u64, Vec<String>) {
        let mut failures = self.failures.lock().clone();
        let unaccepted = self.unaccepted.load(Ordering::Relaxed);
        if unaccepted > 0 {
            failures.push(format!(
                "{unaccepted} new connections reset before any answer"
            ));
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.answered.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// How one HTTP/1.1 exchange ended.
pub enum Exchange {
    /// A complete answer: status, whether the server closes the connection.
    Answered(u16, bool),
    /// The connection was closed (EOF or reset) before any byte of the
    /// answer arrived.
    ClosedBeforeAnswer(String),
    /// Anything else: a connection dropped mid-answer, a bad answer.
    Broken(String),
}

/// One GET on `conn`, reading the whole answer (`Content-Length` bodies:
/// authgate answers every one of these with one).
pub async fn exchange(
    conn: &mut BufReader<TcpStream>,
    target: &str,
    host: &str,
    close: bool,
) -> Exchange {
    let req = format!(
        "GET {target} HTTP/1.1\r\nhost: {host}\r\nx-forwarded-proto: http\r\n{}\r\n",
        if close { "connection: close\r\n" } else { "" }
    );
    if let Err(e) = conn.get_mut().write_all(req.as_bytes()).await {
        return Exchange::ClosedBeforeAnswer(format!("write: {e}"));
    }
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(20), conn.read_line(&mut line)).await {
        Err(_) => return Exchange::Broken("no answer within 20 s".into()),
        Ok(Err(e)) => return Exchange::ClosedBeforeAnswer(format!("read: {e}")),
        Ok(Ok(0)) => return Exchange::ClosedBeforeAnswer("EOF".into()),
        Ok(Ok(_)) => {}
    }
    let Some(status) = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()) else {
        return Exchange::Broken(format!("bad status line {line:?}"));
    };
    let mut length = 0usize;
    let mut closes = false;
    loop {
        let mut h = String::new();
        match conn.read_line(&mut h).await {
            Ok(0) => return Exchange::Broken("EOF in the answer's head".into()),
            Err(e) => return Exchange::Broken(format!("head: {e}")),
            Ok(_) => {}
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            if k == "connection" && v.contains("close") {
                closes = true;
            }
        }
    }
    let mut body = vec![0u8; length];
    if let Err(e) = conn.read_exact(&mut body).await {
        return Exchange::Broken(format!("body: {e}"));
    }
    Exchange::Answered(status, closes || close)
}

/// One HTTP/1.1 traffic kind: GET `target` with `host` on `addr`,
/// expecting `want`, over one kept-alive connection (re-opened when the
/// server closes it) or a new connection per request.
#[derive(Clone)]
pub struct Http1 {
    pub addr: SocketAddr,
    pub target: String,
    pub host: String,
    pub want: u16,
    pub keep_alive: bool,
}

impl Http1 {
    /// Sends requests back to back until `stop`, recording each in `rec`.
    ///
    /// A request that meets a kept-alive connection closed by the server
    /// before any byte of its answer was never read by it (the server
    /// closes idle connections only), and RFC 9112 §9.3.1 lets a client
    /// retry it: it is retried once on a new connection and counted in
    /// `idle_closes`; every other error fails.
    pub async fn run(self, stop: Arc<AtomicBool>, rec: Arc<Record>, idle_closes: Arc<AtomicU64>) {
        let mut conn: Option<BufReader<TcpStream>> = None;
        while !stop.load(Ordering::Relaxed) {
            rec.sent.fetch_add(1, Ordering::Relaxed);
            let mut retried = false;
            loop {
                let reused = conn.is_some();
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => match TcpStream::connect(self.addr).await {
                        Ok(s) => BufReader::new(s),
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                            rec.refused.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            break;
                        }
                        Err(e) => {
                            rec.fail(format!("{} connect: {e}", self.target));
                            break;
                        }
                    },
                };
                match exchange(&mut c, &self.target, &self.host, !self.keep_alive).await {
                    Exchange::Answered(status, closes) => {
                        if status == self.want {
                            rec.answered.fetch_add(1, Ordering::Relaxed);
                        } else {
                            rec.fail(format!("{} answered {status}", self.target));
                        }
                        if !closes {
                            conn = Some(c);
                        }
                    }
                    Exchange::ClosedBeforeAnswer(_) if reused && !retried => {
                        idle_closes.fetch_add(1, Ordering::Relaxed);
                        retried = true;
                        continue;
                    }
                    Exchange::ClosedBeforeAnswer(_) if !reused => {
                        rec.unaccepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Exchange::ClosedBeforeAnswer(e) | Exchange::Broken(e) => {
                        rec.fail(format!(
                            "{} on a {} connection: {e}",
                            self.target,
                            if reused { "kept-alive" } else { "new" }
                        ));
                    }
                }
                break;
            }
        }
    }
}

/// A `Check` for `GET /public/...` (a skip-auth route: allowed).
pub fn check_request(host: &str) -> CheckRequest {
    support::check_request(
        "GET",
        host,
        "/public/grpc",
        HashMap::from([("host".to_owned(), host.to_owned())]),
    )
}

/// gRPC `Check`s back to back until `stop`: on one channel (one HTTP/2
/// connection, re-established by tonic after a `GOAWAY`) or a new
/// connection per request. Each must answer `OK` (code 0).
///
/// On a kept-alive channel, a `Check` that hyper cancels with "connection
/// closed" was still in the client's queue when the draining server's
/// connection ended: it never reached the server (the HTTP/2 counterpart of
/// [`Http1::run`]'s idle close, RFC 9113 §8.7), so it is retried once on a
/// new connection and counted in `idle_closes`; every other error fails.
pub async fn grpc_load(
    port: u16,
    host: String,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    rec: Arc<Record>,
    idle_closes: Arc<AtomicU64>,
) {
    let url = format!("http://127.0.0.1:{port}");
    let mut kept: Option<AuthorizationClient<tonic::transport::Channel>> = None;
    while !stop.load(Ordering::Relaxed) {
        rec.sent.fetch_add(1, Ordering::Relaxed);
        let reused = kept.is_some();
        let mut client = match kept.take() {
            Some(c) => c,
            None => match AuthorizationClient::connect(url.clone()).await {
                Ok(c) => c,
                Err(e) => {
                    let text = format!("{e:?}");
                    if text.contains("ConnectionRefused") {
                        rec.refused.fetch_add(1, Ordering::Relaxed);
                    } else {
                        rec.fail(format!("gRPC connect: {text}"));
                    }
                    continue;
                }
            },
        };
        let mut answer = client.check(check_request(&host)).await;
        let unsent = |r: &Result<_, tonic::Status>| {
            r.as_ref().is_err_and(|s| {
                s.code() == tonic::Code::Cancelled && format!("{s:?}").contains("connection closed")
            })
        };
        if reused && unsent(&answer) {
            idle_closes.fetch_add(1, Ordering::Relaxed);
            answer = match AuthorizationClient::connect(url.clone()).await {
                Ok(mut fresh) => {
                    let again = fresh.check(check_request(&host)).await;
                    client = fresh;
                    again
                }
                Err(e) => Err(tonic::Status::unavailable(format!("gRPC reconnect: {e:?}"))),
            };
        }
        match answer {
            Ok(resp) => {
                let code = resp.into_inner().status.map_or(-1, |s| s.code);
                if code == 0 {
                    rec.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    rec.fail(format!("gRPC check answered code {code}"));
                }
            }
            Err(status) => rec.fail(format!("gRPC check: {status:?}")),
        }
        if keep_alive {
            kept = Some(client);
        }
    }
}

/// The recording client on the three listeners of `gate`: per listener
/// one kept-alive and one new-connection-per-request sender.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<(String, Arc<Record>, tokio::task::JoinHandle<()>)>,
    /// Kept-alive connections closed by the server under a request it never
    /// read, which was then retried (see [`Http1::run`], [`grpc_load`]).
    pub idle_closes: Arc<AtomicU64>,
}

impl Load {
    /// Starts sending to `proxy`, the ext_authz HTTP and gRPC ports;
    /// `target` is the proxy path (e.g. `/public/x`).
    pub fn start(proxy: u16, http: u16, grpc: u16, target: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let idle_closes = Arc::new(AtomicU64::new(0));
        let host = format!("127.0.0.1:{proxy}");
        let mut tasks = Vec::new();
        for keep_alive in [true, false] {
            let kind = if keep_alive { "kept-alive" } else { "new" };
            for (name, port, path) in [
                ("proxy", proxy, target),
                ("ext_authz http", http, "/public/check"),
            ] {
                let rec = Arc::new(Record::default());
                let h = Http1 {
                    addr: ([127, 0, 0, 1], port).into(),
                    target: path.to_owned(),
                    host: host.clone(),
                    want: 200,
                    keep_alive,
                };
                let task = tokio::spawn(h.run(stop.clone(), rec.clone(), idle_closes.clone()));
                tasks.push((format!("{name} ({kind})"), rec, task));
            }
            let rec = Arc::new(Record::default());
            let task = tokio::spawn(grpc_load(
                grpc,
                host.clone(),
                keep_alive,
                stop.clone(),
                rec.clone(),
                idle_closes.clone(),
            ));
            tasks.push((format!("ext_authz grpc ({kind})"), rec, task));
        }
        Load {
            stop,
            tasks,
            idle_closes,
        }
    }

    /// Requests answered so far, all kinds together.
    pub fn answered(&self) -> u64 {
        self.tasks
            .iter()
            .map(|(_, r, _)| r.answered.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops sending (each sender finishes its request in flight) and
    /// returns each kind's record.
    pub async fn stop(self) -> Vec<(String, (u64, u64, u64, Vec<String>))> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for (name, rec, task) in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a sender did not stop")
                .unwrap();
            out.push((name, rec.summary()));
        }
        out
    }
}

/// Waits until `answered()` grew by `n` (traffic flows), panicking after 30 s.
pub async fn flowing(load: &Load, n: u64, what: &str) {
    let from = load.answered();
    support::eventually(Duration::from_secs(30), what, || async {
        (load.answered() >= from + n).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// The upgrade.
// ---------------------------------------------------------------------------

/// The `--upgrade` process; killed when dropped.
struct Upgraded(Child, tempfile::TempDir);

impl Drop for Upgraded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Upgraded {
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.1.path().join("stderr")).unwrap_or_default()
    }
}

/// `authgate run --config CONFIG --upgrade` (log level info), its stdout
/// and stderr in a temp dir of its own.
fn spawn_upgrade(config: &Path) -> Upgraded {
    let out = tempfile::tempdir().unwrap();
    let child = Command::new(support::bin())
        .args(["run", "--config"])
        .arg(config)
        .arg("--upgrade")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(out.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(out.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    Upgraded(child, out)
}

fn kill(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap();
    // SAFETY: plain syscall on our own child's pid; no memory involved.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({sig}) failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_hands_every_listener_over_without_losing_a_request() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.shutdown_grace = "3s";
    cfg.server = vec![format!("  upgrade_sock: {}", sock.display())];
    let (http_port, grpc_port) = cfg.with_ext_authz();
    let mut old = Authgate::run(&cfg).await;
    let load = Load::start(cfg.port, http_port, grpc_port, "/public/x");
    flowing(&load, 200, "traffic through the old process").await;

    // The new binary beside the old one, on the same config file.
    let mut new = spawn_upgrade(&old.config_path());
    // It opens the hand-over socket once it is ready to serve.
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = new.0.try_wait().unwrap() {
            panic!("--upgrade exited ({status}): {}", new.stderr());
        }
        use std::os::unix::fs::FileTypeExt as _;
        if std::fs::metadata(&sock).is_ok_and(|m| m.file_type().is_socket()) {
            break;
        }
        assert!(Instant::now() < end, "no upgrade socket: {}", new.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    flowing(&load, 100, "traffic while the new process waits").await;

    let quit_at = Instant::now();
    kill(old.pid(), libc::SIGQUIT);
    // The old one keeps accepting for Pingora's 5 s hand-over window, then
    // drains within its grace (3 s).
    let status = old.wait_exit(Duration::from_secs(5 + 3 + 2)).await;
    let old_gone = quit_at.elapsed();
    assert!(status.success(), "old process: {status}; {}", old.stderr());
    assert!(
        new.0.try_wait().unwrap().is_none(),
        "the new process exited: {}",
        new.stderr()
    );
    // Only the new process is left, and it answers on every listener.
    flowing(&load, 200, "traffic through the new process alone").await;
    let idle_closes = load.idle_closes.load(Ordering::Relaxed);
    let records = load.stop().await;

    let mut failures = Vec::new();
    let mut total = 0;
    for (name, (sent, answered, refused, failed)) in &records {
        eprintln!(
            "{name}: sent {sent}, answered {answered}, refused {refused}, failed {}",
            failed.len()
        );
        total += sent;
        if *refused > 0 {
            failures.push(format!("{name}: {refused} connections refused"));
        }
        failures.extend(failed.iter().map(|f| format!("{name}: {f}")));
    }
    eprintln!(
        "upgrade: {total} requests, old process gone {old_gone:?} after SIGQUIT, \
         {idle_closes} kept-alive connections closed under an unread request (retried)"
    );
    assert!(
        failures.is_empty(),
        "{} lost: {failures:#?}",
        failures.len()
    );
    assert!(
        old_gone <= Duration::from_secs(5 + 3) + Duration::from_millis(500),
        "old process took {old_gone:?}"
    );
    assert!(new.stderr().contains("ready"), "{}", new.stderr());
}

#[tokio::test]
async fn sigquit_without_a_waiting_upgrade_is_ignored() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.server = vec![format!(
        "  upgrade_sock: {}",
        dir.path().join("none.sock").display()
    )];
    let mut gate = Authgate::run(&cfg).await;
    gate.signal(libc::SIGQUIT);
    support::eventually(
        Duration::from_secs(15),
        "the SIGQUIT refusal in the log",
        || async { gate.stderr().contains("SIGQUIT ignored").then_some(()) },
    )
    .await;
    assert!(gate.is_running());
    let r = support::client()
        .get(gate.url("/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_upgrade_with_no_process_to_take_over_from_exits_with_an_error() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("upgrade.sock");
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.server = vec![format!("  upgrade_sock: {}", sock.display())];
    // Nothing runs on this config: the process waits for sockets nobody sends.
    let config = dir.path().join("authgate.yaml");
    std::fs::write(&config, cfg.yaml()).unwrap();
    let mut gate = spawn_upgrade(&config);
    let started = Instant::now();
    let end = started + Duration::from_secs(45);
    let mut saw_sock = false;
    let status = loop {
        use std::os::unix::fs::FileTypeExt as _;
        saw_sock |= std::fs::metadata(&sock).is_ok_and(|m| m.file_type().is_socket());
        if let Some(status) = gate.0.try_wait().unwrap() {
            break status;
        }
        // It never serves on sockets of its own while it waits.
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", cfg.port)).is_err(),
            "the --upgrade process listens on its own"
        );
        assert!(Instant::now() < end, "still waiting: {}", gate.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = started.elapsed();
    eprintln!("--upgrade with nothing to take over: {status} after {took:?}");
    assert!(saw_sock, "it never waited on server.upgrade_sock");
    assert!(!status.success(), "exited successfully: {}", gate.stderr());
}
