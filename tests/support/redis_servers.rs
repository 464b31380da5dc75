//! Real Redis topologies for the fleet tests (tests/redis_sentinel.rs,
//! redis_cluster.rs, replicas.rs): Debian's `redis-server`,
//! `redis-sentinel` and `redis-cli` on free loopback ports, each in its own
//! temp dir, killed when dropped. Waits poll with deadlines (tokio timers).
//!
//! Included with `#[path = "support/redis_servers.rs"] mod redis_servers;`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// One `redis-server` or `redis-sentinel` process.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// `requirepass` of this node, if any (for [`RedisProc::cmd`]).
    pub password: Option<String>,
    /// A TLS-only node: the CA `redis-cli` verifies it with (`--cacert`).
    pub tls_ca: Option<PathBuf>,
}

/// TLS for a data node ([`RedisProc::server_tls`]): the certificate and key
/// it presents, and the CA it verifies its own peers with (replication,
/// cluster bus), which `redis-cli` also trusts for it.
#[derive(Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl Tls {
    /// The `tls-*` config lines for these files, clients unauthenticated
    /// (`tls-auth-clients no`: authgate sends no client certificate).
    pub fn conf_lines(&self) -> Vec<String> {
        vec![
            format!("tls-cert-file {}", self.cert.display()),
            format!("tls-key-file {}", self.key.display()),
            format!("tls-ca-cert-file {}", self.ca.display()),
            "tls-auth-clients no".to_owned(),
        ]
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the Debian Redis binaries are installed (`dev.sh test` installs them).
pub fn available() -> bool {
    ["redis-server", "redis-sentinel", "redis-cli"]
        .iter()
        .all(|b| Command::new(b).arg("--version").output().is_ok())
}

/// For a `cluster-enabled yes` line, the `cluster-port` line that puts the
/// node's cluster bus on a test port of its own: Redis's default, the data
/// port + 10000, lands in the kernel's ephemeral range (32768+) for test
/// ports, where an outgoing connection may already hold it.
fn cluster_bus(line: &str) -> String {
    if line.trim() == "cluster-enabled yes" {
        format!("cluster-port {}\n", free_port())
    } else {
        String::new()
    }
}

impl RedisProc {
    async fn spawn(
        program: &str,
        dir: tempfile::TempDir,
        conf: &str,
        port: u16,
        password: Option<&str>,
        tls_ca: Option<PathBuf>,
    ) -> RedisProc {
        let path = dir.path().join("redis.conf");
        std::fs::write(&path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(program)
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} not runnable ({e}); ./dev.sh test installs it"));
        let p = RedisProc {
            child: Some(child),
            port,
            dir,
            password: password.map(str::to_owned),
            tls_ca,
        };
        p.wait_answering().await;
        p
    }

    /// A data node: `extra` lines appended to a config with no persistence.
    pub async fn server(extra: &[String]) -> RedisProc {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\nprotected-mode no\n",
            dir.path().display()
        );
        let mut password = None;
        for l in extra {
            if let Some(p) = l.strip_prefix("requirepass ") {
                password = Some(p.to_owned());
            }
            conf.push_str(l);
            conf.push('\n');
            conf.push_str(&cluster_bus(l));
        }
        Self::spawn("redis-server", dir, &conf, port, password.as_deref(), None).await
    }

    /// A data node listening only with TLS (`port 0`, `tls-port`),
    /// replicating over TLS (`tls-replication yes`), with `extra` lines
    /// (e.g. `tls-cluster yes`).
    pub async fn server_tls(extra: &[String], tls: &Tls) -> RedisProc {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir {}\n\
             protected-mode no\ntls-replication yes\n",
            dir.path().display()
        );
        let mut password = None;
        for l in tls.conf_lines().iter().chain(extra) {
            if let Some(p) = l.strip_prefix("requirepass ") {
                password = Some(p.to_owned());
            }
            conf.push_str(l);
            conf.push('\n');
            conf.push_str(&cluster_bus(l));
        }
        let ca = Some(tls.ca.clone());
        Self::spawn("redis-server", dir, &conf, port, password.as_deref(), ca).await
    }

    /// A sentinel monitoring `master` as `mymaster` (quorum 2, 1 s to
    /// notice a dead master), with `extra` lines.
    pub async fn sentinel(master_port: u16, extra: &[String]) -> RedisProc {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut conf = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 10000\n\
             sentinel parallel-syncs mymaster 1\n",
            dir.path().display()
        );
        let mut password = None;
        for l in extra {
            if let Some(p) = l.strip_prefix("requirepass ") {
                password = Some(p.to_owned());
            }
            conf.push_str(l);
            conf.push('\n');
            conf.push_str(&cluster_bus(l));
        }
        Self::spawn(
            "redis-sentinel",
            dir,
            &conf,
            port,
            password.as_deref(),
            None,
        )
        .await
    }

    /// What the process logged so far (e.g. refused TLS handshakes).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Kills the process now (SIGKILL: a crashed node).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `redis-cli -p PORT ARGS...`: its stdout, trimmed, or None when the
    /// command failed or the node is down.
    pub fn try_cmd(&self, args: &[&str]) -> Option<String> {
        match &self.tls_ca {
            Some(ca) => cli_tls(self.port, self.password.as_deref(), ca, args),
            None => cli(self.port, self.password.as_deref(), args),
        }
    }

    /// As [`RedisProc::try_cmd`], panicking on failure.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|| panic!("redis-cli -p {} {args:?} failed", self.port))
    }

    async fn wait_answering(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.try_cmd(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                Instant::now() < end,
                "redis on {} never answered; log:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `redis-cli` against a port; None on failure or an `(error)` answer.
pub fn cli(port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
    run_cli(Command::new("redis-cli"), port, password, args)
}

/// [`cli`] over TLS, verifying the node's certificate with `ca`.
pub fn cli_tls(
    port: u16,
    password: Option<&str>,
    ca: &std::path::Path,
    args: &[&str],
) -> Option<String> {
    let mut c = Command::new("redis-cli");
    c.arg("--tls").arg("--cacert").arg(ca);
    run_cli(c, port, password, args)
}

fn run_cli(mut c: Command, port: u16, password: Option<&str>, args: &[&str]) -> Option<String> {
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(p) = password {
        c.env("REDISCLI_AUTH", p);
    }
    let out = c.args(args).stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success()
        && !text.starts_with("ERR")
        && !text.contains("(error)")
        && !text.starts_with("NOAUTH")
        && !text.starts_with("Could not connect"))
    .then_some(text)
}

/// Polls `probe` every 50 ms until it is true; panics with `what` after
/// `deadline`. Returns how long it took.
pub async fn wait_for(deadline: Duration, what: &str, mut probe: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !probe() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}
