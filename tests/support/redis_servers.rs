//! Real Redis topologies for the fleet tests (tests/redis_sentinel.rs,
//! redis_cluster.rs, redis_tls.rs, replicas.rs): Debian's `redis-server`,
//! `redis-sentinel` and `redis-cli` on free loopback ports, each in its own
//! temp dir, killed when dropped; a master/replica/three-sentinel topology
//! and a cluster made of them. Waits poll with deadlines (tokio timers).
//!
//! Included with `#[path = "support/redis_servers.rs"] mod redis_servers;`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::free_port;

/// The `host:port,...` seed list of a Redis Cluster URL naming `nodes`.
pub fn seed_list(nodes: &[RedisProc]) -> String {
    let seeds: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    seeds.join(",")
}

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

/// A master, its replica and three sentinels monitoring them as
/// `mymaster`, the data nodes with `requirepass`/`masterauth`, plain TCP or
/// TLS (`tls-replication yes`; the sentinels then listen in plain TCP and
/// reach the data nodes over TLS).
pub struct SentinelTopology {
    /// The master first, then its replica (until a switch).
    pub nodes: Vec<RedisProc>,
    /// Three sentinels.
    pub sentinels: Vec<RedisProc>,
    password: String,
    tls: bool,
}

impl SentinelTopology {
    /// Starts the data nodes with `password`, TLS-only when `tls` is given,
    /// and three sentinels (with `sentinel_password` as their own
    /// `requirepass` if given); returns once the replica is in sync and every
    /// sentinel knows the replica and the two others, panicking after
    /// `deadline` for any of these waits.
    pub async fn start(
        password: &str,
        sentinel_password: Option<&str>,
        tls: Option<&Tls>,
        deadline: Duration,
    ) -> SentinelTopology {
        let auth = [
            format!("requirepass {password}"),
            format!("masterauth {password}"),
        ];
        let data_node = |conf: Vec<String>| async move {
            match tls {
                Some(tls) => RedisProc::server_tls(&conf, tls).await,
                None => RedisProc::server(&conf).await,
            }
        };
        let master = data_node(auth.to_vec()).await;
        let mut replica_conf = auth.to_vec();
        replica_conf.push(format!("replicaof 127.0.0.1 {}", master.port));
        let replica = data_node(replica_conf).await;
        let mut sentinel_conf = Vec::new();
        if let Some(tls) = tls {
            sentinel_conf.extend(tls.conf_lines());
            sentinel_conf.push("tls-replication yes".to_owned());
        }
        if let Some(pw) = sentinel_password {
            sentinel_conf.push(format!("requirepass {pw}"));
            sentinel_conf.push(format!("sentinel sentinel-pass {pw}"));
        }
        sentinel_conf.push(format!("sentinel auth-pass mymaster {password}"));
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(RedisProc::sentinel(master.port, &sentinel_conf).await);
        }
        let in_sync = if tls.is_some() {
            "the replica in sync over TLS"
        } else {
            "the replica in sync"
        };
        wait_for(deadline, in_sync, || {
            replica
                .try_cmd(&["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        })
        .await;
        for s in &sentinels {
            wait_for(
                deadline,
                "each sentinel to know the replica and the others",
                || {
                    let replicas = s
                        .try_cmd(&["SENTINEL", "replicas", "mymaster"])
                        .unwrap_or_default();
                    let others = s
                        .try_cmd(&["SENTINEL", "sentinels", "mymaster"])
                        .unwrap_or_default();
                    replicas.contains("master-link-status\nok")
                        && others.lines().filter(|l| *l == "name").count() == 2
                },
            )
            .await;
        }
        SentinelTopology {
            nodes: vec![master, replica],
            sentinels,
            password: password.to_owned(),
            tls: tls.is_some(),
        }
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = s.try_cmd(&["SENTINEL", "get-master-addr-by-name", "mymaster"])?;
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Waits until the sentinels name `port` as the master (polling every
    /// 20 ms); how long it took. Panics after `deadline`.
    pub async fn wait_master(&self, port: u16, deadline: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.master_port() == Some(port) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "the sentinels never switched to {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `SENTINEL FAILOVER mymaster` on the first sentinel: a switch with
    /// the old master still up; panics unless it answers OK.
    pub fn failover(&self) {
        assert_eq!(
            self.sentinels[0].cmd(&["SENTINEL", "FAILOVER", "mymaster"]),
            "OK"
        );
    }

    /// The data node on `port`.
    pub fn node(&self, port: u16) -> &RedisProc {
        self.nodes.iter().find(|n| n.port == port).unwrap()
    }

    /// The data node on `port`, to kill it.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisProc {
        self.nodes.iter_mut().find(|n| n.port == port).unwrap()
    }

    /// authgate's URL for it: `redis+sentinel://` (`rediss+sentinel://`
    /// with TLS) with the data nodes' password, every sentinel, `mymaster`,
    /// database 0.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!(
            "{scheme}+sentinel://:{}@{}/mymaster/0",
            self.password,
            hosts.join(",")
        )
    }
}

/// A cluster of `masters` masters with `replicas` replicas each
/// (`redis-cli --cluster create … --cluster-replicas N`), TLS-only with
/// `tls-cluster yes` when `tls` is given; `node_timeout_ms` is
/// `cluster-node-timeout`, how long a dead master goes unnoticed before its
/// replica takes over. Returns once every node reports `cluster_state:ok`,
/// panicking after `deadline`.
pub async fn start_cluster(
    masters: usize,
    replicas: usize,
    node_timeout_ms: u32,
    tls: Option<&Tls>,
    deadline: Duration,
) -> Vec<RedisProc> {
    let mut conf = vec![
        "cluster-enabled yes".to_owned(),
        "cluster-config-file nodes.conf".to_owned(),
        format!("cluster-node-timeout {node_timeout_ms}"),
    ];
    if tls.is_some() {
        conf.push("tls-cluster yes".to_owned());
    }
    let mut nodes = Vec::new();
    for _ in 0..masters * (1 + replicas) {
        nodes.push(match tls {
            Some(tls) => RedisProc::server_tls(&conf, tls).await,
            None => RedisProc::server(&conf).await,
        });
    }
    let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
    args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
    if replicas > 0 {
        args.extend(["--cluster-replicas".into(), replicas.to_string()]);
    }
    args.push("--cluster-yes".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    nodes[0].cmd(&args);
    for n in &nodes {
        wait_for(deadline, "cluster_state:ok on every node", || {
            n.try_cmd(&["CLUSTER", "INFO"])
                .is_some_and(|i| i.contains("cluster_state:ok"))
        })
        .await;
    }
    // Every replica in sync with its master: authgate waits for a replica
    // on every write to a master that has one, so a cluster still syncing
    // answers 503 on logins until then.
    for n in &nodes {
        wait_for(deadline, "every replica linked to its master", || {
            n.try_cmd(&["INFO", "replication"])
                .is_some_and(|i| !i.contains("role:slave") || i.contains("master_link_status:up"))
        })
        .await;
    }
    nodes
}

/// Asserts that `spread` (session keys per node) adds up to `sessions` and
/// that more than one node holds some: the keys' slots spread them.
/// `per` names the nodes counted in the message ("node", "master").
pub fn assert_spread(spread: &[usize], sessions: usize, per: &str) {
    assert_eq!(
        spread.iter().sum::<usize>(),
        sessions,
        "sessions per {per}: {spread:?}"
    );
    assert!(
        spread.iter().filter(|n| **n > 0).count() >= 2,
        "sessions all on one node: {spread:?}"
    );
}
