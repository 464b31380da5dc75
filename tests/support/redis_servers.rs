//! Real Redis topologies for the fleet tests (tests/redis_sentinel.rs,
//! redis_cluster.rs, replicas.rs): Debian's `redis-server`,
//! `redis-sentinel` and `redis-cli` on free loopback ports, each in its own
//! temp dir, killed when dropped. Waits poll with deadlines (tokio timers).
//!
//! Included with `#[path = "support/redis_servers.rs"] mod redis_servers;`.

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

impl RedisProc {
    async fn spawn(
        program: &str,
        dir: tempfile::TempDir,
        conf: &str,
        port: u16,
        password: Option<&str>,
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
        }
        Self::spawn("redis-server", dir, &conf, port, password.as_deref()).await
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
        }
        Self::spawn("redis-sentinel", dir, &conf, port, password.as_deref()).await
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
        cli(self.port, self.password.as_deref(), args)
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
    let mut c = Command::new("redis-cli");
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
