//! The Redis session store: standalone (`redis://`, `rediss://`, Unix
//! socket), Sentinel and Cluster, built from the typed
//! [`config::RedisTopology`] that `config` parsed from `session.redis.url`
//! (this module never parses a URL, so `check` and `run` agree on it).
//!
//! Requests never connect: a background task holds the connection, probes
//! it at most [`PROBE_INTERVAL`] apart and reconnects, so a request during an
//! outage fails fast with 503 and the first one after recovery just works.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisResult};

use crate::config;
use crate::metrics::{Dependency, Metrics};

/// How often the background task probes (and, when down, reconnects).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const PREFIX: &str = "authgate:";

/// Why a Redis operation failed; every one means "503, try again".
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The redis crate refused the client built from `session.redis`
    /// (config validation should have caught it first).
    #[error("session.redis: cannot build the client: {0}")]
    Client(String),
    /// No live connection (the prober is reconnecting).
    #[error("redis is not connected")]
    Disconnected,
    /// A command failed; the error's category only (no keys, no values).
    #[error("redis: {0}")]
    Command(String),
}

enum Topology {
    Single(redis::Client),
    Sentinel(tokio::sync::Mutex<redis::sentinel::SentinelClient>),
    Cluster(redis::cluster::ClusterClient),
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn cmd<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Single(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    async fn pipe(&self, pipe: &Pipeline) -> RedisResult<()> {
        match self.clone() {
            Conn::Single(mut c) => pipe.query_async(&mut c).await,
            Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
        }
    }
}

/// The Redis store's client and its one shared connection, kept up by
/// [`RedisStore::maintain`].
pub struct RedisStore {
    topology: Topology,
    conn: ArcSwapOption<Conn>,
    metrics: Metrics,
}

impl RedisStore {
    /// Builds the client from the typed config without connecting.
    ///
    /// # Errors
    /// [`RedisError::Client`] if the redis crate refuses the settings, which
    /// config validation rules out.
    pub fn new(cfg: &config::Redis, metrics: Metrics) -> Result<Self, RedisError> {
        let topology = build_topology(cfg)?;
        metrics.dependency(Dependency::Redis, false);
        Ok(RedisStore {
            topology,
            conn: ArcSwapOption::empty(),
            metrics,
        })
    }

    /// Whether the last probe or command found Redis answering.
    pub fn is_up(&self) -> bool {
        self.conn.load().is_some()
    }

    fn conn(&self) -> Result<Arc<Conn>, RedisError> {
        self.conn.load_full().ok_or(RedisError::Disconnected)
    }

    /// A command failed for connection reasons: drop the connection so the
    /// prober reconnects, and report unavailability.
    fn fail(&self, e: redis::RedisError) -> RedisError {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
        {
            self.set(None);
        }
        RedisError::Command(e.category().to_owned())
    }

    fn set(&self, conn: Option<Conn>) {
        let up = conn.is_some();
        if self.is_up() != up {
            if up {
                tracing::info!("redis reachable");
            } else {
                tracing::warn!("redis unreachable");
            }
        }
        self.conn.store(conn.map(Arc::new));
        self.metrics.dependency(Dependency::Redis, up);
    }

    async fn connect(&self) -> RedisResult<Conn> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        match &self.topology {
            Topology::Single(c) => Ok(Conn::Single(
                c.get_multiplexed_async_connection_with_config(&cfg).await?,
            )),
            Topology::Sentinel(s) => {
                let mut s = s.lock().await;
                Ok(Conn::Single(
                    s.get_async_connection_with_config(&cfg).await?,
                ))
            }
            Topology::Cluster(c) => Ok(Conn::Cluster(c.get_async_connection().await?)),
        }
    }

    /// Holds the connection up for the life of the process.
    pub async fn maintain(&self) {
        loop {
            let healthy = match self.conn.load_full() {
                Some(c) => c.cmd::<String>(&redis::cmd("PING")).await.is_ok(),
                None => false,
            };
            if !healthy {
                match tokio::time::timeout(CONNECT_TIMEOUT * 2, self.connect()).await {
                    Ok(Ok(c)) if c.cmd::<String>(&redis::cmd("PING")).await.is_ok() => {
                        self.set(Some(c))
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e.category(), "redis connect failed");
                        self.set(None);
                    }
                    _ => self.set(None),
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The sealed session stored under `id`, if any.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn get(&self, id: &[u8; 16]) -> Result<Option<String>, RedisError> {
        let conn = self.conn()?;
        conn.cmd(redis::cmd("GET").arg(session_key(id)))
            .await
            .map_err(|e| self.fail(e))
    }

    /// Writes the session and its `sid`/`sub` index entries: in one
    /// transaction on a single node, so a failure leaves nothing
    /// half-written; per key on a cluster, where the keys live in different
    /// slots (index entries first, so a session is never unindexed).
    pub async fn put(
        &self,
        id: &[u8; 16],
        sealed: &str,
        ttl_secs: u64,
        sid: Option<&str>,
        sub: &str,
    ) -> Result<(), RedisError> {
        let conn = self.conn()?;
        let member = hex(id);
        let indexes: Vec<String> = [
            sid.map(|s| index_key("sid", s)),
            (!sub.is_empty()).then(|| index_key("sub", sub)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let add_index = |pipe: &mut Pipeline, index: &str| {
            pipe.cmd("SADD").arg(index).arg(&member).ignore();
            // The index outlives none of its sessions by much: refreshed on every write.
            pipe.cmd("EXPIRE").arg(index).arg(ttl_secs).ignore();
        };
        let mut set = redis::pipe();
        set.cmd("SET")
            .arg(session_key(id))
            .arg(sealed)
            .arg("EX")
            .arg(ttl_secs)
            .ignore();
        if matches!(*conn, Conn::Single(_)) {
            set.atomic();
            for index in &indexes {
                add_index(&mut set, index);
            }
        } else {
            for index in &indexes {
                let mut pipe = redis::pipe();
                add_index(&mut pipe, index);
                conn.pipe(&pipe).await.map_err(|e| self.fail(e))?;
            }
        }
        conn.pipe(&set).await.map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Deletes the session stored under `id` (sign-out).
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn delete(&self, id: &[u8; 16]) -> Result<(), RedisError> {
        let conn = self.conn()?;
        conn.cmd::<i64>(redis::cmd("DEL").arg(session_key(id)))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Deletes the sessions of a logout token: those of its `sid` when it
    /// names one (Back-Channel Logout 1.0 2.4: one IdP session), else every
    /// session of its `sub`.
    pub async fn revoke(&self, sid: Option<&str>, sub: Option<&str>) -> Result<usize, RedisError> {
        let conn = self.conn()?;
        let index = match (sid, sub) {
            (Some(sid), _) => index_key("sid", sid),
            (None, Some(sub)) => index_key("sub", sub),
            (None, None) => return Ok(0),
        };
        let members: Vec<String> = conn
            .cmd(redis::cmd("SMEMBERS").arg(&index))
            .await
            .map_err(|e| self.fail(e))?;
        let mut removed = 0;
        for m in &members {
            let n: i64 = conn
                .cmd(redis::cmd("DEL").arg(format!("{PREFIX}session:{m}")))
                .await
                .map_err(|e| self.fail(e))?;
            removed += usize::try_from(n).unwrap_or(0);
        }
        conn.cmd::<i64>(redis::cmd("DEL").arg(&index))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(removed)
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn session_key(id: &[u8; 16]) -> String {
    format!("{PREFIX}session:{}", hex(id))
}

fn index_key(kind: &str, value: &str) -> String {
    // Hash the value: `sub`/`sid` are IdP-controlled strings of any length.
    use sha2::Digest;
    format!(
        "{PREFIX}{kind}:{}",
        hex(&sha2::Sha256::digest(value.as_bytes()))
    )
}

/// The connection settings of the data nodes (single server, master or
/// cluster node): database, credentials and protocol, from the typed config.
fn redis_info(cfg: &config::Redis) -> redis::RedisConnectionInfo {
    redis::RedisConnectionInfo {
        db: cfg.db,
        username: cfg.username.clone(),
        password: cfg.password.as_ref().map(|p| p.expose().clone()),
        protocol: match cfg.protocol {
            config::RedisProtocol::Resp2 => redis::ProtocolVersion::RESP2,
            config::RedisProtocol::Resp3 => redis::ProtocolVersion::RESP3,
        },
    }
}

/// A TCP address, with TLS (certificates verified) when `tls`.
fn tcp_addr(node: &config::RedisNode, tls: bool) -> redis::ConnectionAddr {
    if tls {
        redis::ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        redis::ConnectionAddr::Tcp(node.host.clone(), node.port)
    }
}

/// Builds the client handles from the typed topology that `config` parsed;
/// connects to nothing (the prober does). Config validation already refused
/// every form these builders reject, so an error here is a bug, reported
/// rather than panicking.
fn build_topology(cfg: &config::Redis) -> Result<Topology, RedisError> {
    let client_err = |e: redis::RedisError| RedisError::Client(e.to_string());
    match &cfg.topology {
        config::RedisTopology::Single(addr) => {
            let addr = match addr {
                config::RedisAddr::Tcp(node) => tcp_addr(node, cfg.tls),
                config::RedisAddr::Unix(path) => redis::ConnectionAddr::Unix(path.clone()),
            };
            let info = redis::ConnectionInfo {
                addr,
                redis: redis_info(cfg),
            };
            redis::Client::open(info)
                .map(Topology::Single)
                .map_err(client_err)
        }
        config::RedisTopology::Cluster { nodes } => {
            let nodes: Vec<redis::ConnectionInfo> = nodes
                .iter()
                .map(|node| redis::ConnectionInfo {
                    addr: tcp_addr(node, cfg.tls),
                    redis: redis_info(cfg),
                })
                .collect();
            redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map(Topology::Cluster)
                .map_err(client_err)
        }
        config::RedisTopology::Sentinel { sentinels, master } => {
            // Sentinels are asked in plain TCP without credentials; the
            // credentials, db and TLS are the master's.
            let sentinels: Vec<redis::ConnectionInfo> = sentinels
                .iter()
                .map(|node| redis::ConnectionInfo {
                    addr: tcp_addr(node, false),
                    redis: redis::RedisConnectionInfo::default(),
                })
                .collect();
            let node = redis::sentinel::SentinelNodeConnectionInfo {
                tls_mode: cfg.tls.then_some(redis::TlsMode::Secure),
                redis_connection_info: Some(redis_info(cfg)),
            };
            redis::sentinel::SentinelClient::build(
                sentinels,
                master.clone(),
                Some(node),
                redis::sentinel::SentinelServerType::Master,
            )
            .map(|c| Topology::Sentinel(tokio::sync::Mutex::new(c)))
            .map_err(client_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `session.redis` of a config whose only unusual value is `url`, as
    /// `authgate check` would load it (no environment, no DNS); the problems
    /// when refused.
    fn redis_config(url: &str) -> Result<config::Redis, Vec<config::Problem>> {
        let yaml = format!(
            "provider: {{ issuer_url: 'https://idp.example.com', client_id: a }}\n\
             cookie: {{ secret: 0123456789abcdef }}\n\
             upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]\n\
             session: {{ store: redis, redis: {{ url: '{url}' }} }}\n"
        );
        let no_dns = |_: &str, _: u16| -> std::io::Result<Vec<std::net::SocketAddr>> {
            Err(std::io::Error::other("no DNS in this test"))
        };
        match config::load_str_with(&yaml, &|_| None, &no_dns) {
            Ok(cfg) => match cfg.session {
                config::Session::Redis(redis) => Ok(redis),
                config::Session::Cookie => panic!("{url}: loaded as the cookie store"),
            },
            Err(err) => Err(err.problems().to_vec()),
        }
    }

    /// Every Redis URL form used anywhere in the tests, `conf/` and the
    /// README, plus the forms that used to pass `check` and fail at `run`:
    /// `true` when `check` must accept it.
    const URL_FORMS: &[(&str, bool)] = &[
        // src/config tests, src/session tests
        ("redis://127.0.0.1:6379/0", true),
        ("rediss://user:pw@redis.example.com:6380", true),
        ("redis+sentinel://s1:26379,s2:26379/mymaster", true),
        ("redis+cluster://n1:6379,n2:6379", true),
        ("rediss+cluster://n1:6379", true),
        ("rediss://u:p@r.example.com:6380/1", true),
        ("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000", true),
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2",
            true,
        ),
        ("http://redis:6379", false),
        ("redis-host:6379", false),
        ("redis+sentinel://10.0.0.1:26379", false),
        ("http://x", false),
        // conf/authgate.yaml, tests/e2e/lib/redis.js
        ("redis://redis.authgate.svc.cluster.local:6379/0", true),
        ("redis://127.0.0.1:46379/0", true),
        // README
        ("redis://user:password@host/3", true),
        ("redis+sentinel://h1:26379,h2:26379/mymaster/0", true),
        ("redis+cluster://h1:6379,h2:6379", true),
        // Forms `check` used to accept and `run` refused (issue 8) …
        ("REDIS+SENTINEL://h1:26379,h2:26379", false),
        ("redis+sentinel://h1:notaport/mymaster", false),
        ("redis+sentinel://h1/mymaster/x", false),
        ("redis://h/0/1", false),
        ("rediss://h:6380/#insecure", false),
        // … or accepted by both while meaning something else
        ("redis+cluster://n1:6379/3", false),
        ("redis://h:6379/0?timeout=5", false),
        // Upper-case schemes: `check` accepted, `run` refused; now both accept.
        ("REDIS://127.0.0.1:6379/0", true),
        ("Rediss+Sentinel://s1,s2/mymaster", true),
        ("REDIS+CLUSTER://n1,n2", true),
        // Other forms the redis client supports
        ("redis://:p%40ss@[::1]:6380/2?protocol=resp3", true),
        ("unix:///run/redis.sock?db=1&pass=pw", true),
        ("redis+unix:///run/redis.sock", true),
        ("redis+cluster://n1,n2/0", true),
        ("", false),
        ("redis:///0", false),
        ("redis+cluster:///0", false),
        ("unix://relative.sock", false),
    ];

    #[test]
    fn check_and_run_agree_on_every_redis_url_form() {
        for &(url, accepted) in URL_FORMS {
            match redis_config(url) {
                Ok(cfg) => {
                    assert!(accepted, "{url}: check accepted a form it must refuse");
                    // What `run` does with it, short of connecting.
                    let store = RedisStore::new(&cfg, Metrics::new().unwrap())
                        .unwrap_or_else(|e| panic!("{url}: check accepted, run refused: {e}"));
                    assert!(!store.is_up(), "{url}: connected");
                }
                Err(problems) => {
                    assert!(!accepted, "{url}: check refused {problems:?}");
                    assert_eq!(problems.len(), 1, "{url}: {problems:?}");
                    assert_eq!(problems[0].key, "session.redis.url", "{url}");
                }
            }
        }
    }

    #[test]
    fn typed_forms_build_the_matching_client() {
        let topology = |url| build_topology(&redis_config(url).unwrap()).unwrap();
        assert!(matches!(
            topology("redis://127.0.0.1:6379/0"),
            Topology::Single(_)
        ));
        assert!(matches!(
            topology("unix:///run/redis.sock"),
            Topology::Single(_)
        ));
        assert!(matches!(
            topology("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000"),
            Topology::Cluster(_)
        ));
        assert!(matches!(
            topology("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2"),
            Topology::Sentinel(_)
        ));
        let Topology::Single(client) = topology("rediss://u:p%3Aw@r.example.com:6380/1") else {
            panic!("not a single client");
        };
        let info = client.get_connection_info();
        assert_eq!(
            info.addr,
            redis::ConnectionAddr::TcpTls {
                host: "r.example.com".into(),
                port: 6380,
                insecure: false,
                tls_params: None,
            }
        );
        assert_eq!(info.redis.db, 1);
        assert_eq!(info.redis.username.as_deref(), Some("u"));
        assert_eq!(info.redis.password.as_deref(), Some("p:w"));
    }

    #[test]
    fn index_keys_do_not_embed_idp_strings() {
        let k = index_key("sub", "a:b*c");
        assert!(k.starts_with("authgate:sub:"));
        assert!(!k.contains('*'));
        assert_eq!(k.len(), "authgate:sub:".len() + 64);
    }

    /// A throwaway `redis-server` on a free loopback port, killed on drop.
    struct LocalRedis {
        child: std::process::Child,
        port: u16,
    }

    impl Drop for LocalRedis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// None (with a note) when `redis-server` is not installed.
    fn local_redis() -> Option<LocalRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let spawned = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => Some(LocalRedis { child, port }),
            Err(e) => {
                println!("skipped: redis-server not runnable ({e})");
                None
            }
        }
    }

    async fn connected_store(port: u16) -> Arc<RedisStore> {
        let cfg = redis_config(&format!("redis://127.0.0.1:{port}/0")).unwrap();
        let store = Arc::new(RedisStore::new(&cfg, Metrics::new().unwrap()).unwrap());
        let bg = store.clone();
        // The prober runs for the test's life, as it does for the process's.
        tokio::spawn(async move { bg.maintain().await });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !store.is_up() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server never answered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store
    }

    #[tokio::test]
    async fn back_channel_revoke_takes_only_the_sid_when_named_else_every_session_of_the_sub() {
        let Some(redis) = local_redis() else {
            return;
        };
        let store = connected_store(redis.port).await;
        let (a, b, c, other) = ([1u8; 16], [2u8; 16], [3u8; 16], [4u8; 16]);
        store
            .put(&a, "sealed-a", 600, Some("sid-1"), "alice")
            .await
            .unwrap();
        store
            .put(&b, "sealed-b", 600, Some("sid-2"), "alice")
            .await
            .unwrap();
        store.put(&c, "sealed-c", 600, None, "alice").await.unwrap();
        store
            .put(&other, "sealed-o", 600, Some("sid-9"), "bob")
            .await
            .unwrap();

        // A logout token naming a sid ends that IdP session only.
        assert_eq!(store.revoke(Some("sid-1"), Some("alice")).await.unwrap(), 1);
        assert_eq!(store.get(&a).await.unwrap(), None);
        assert_eq!(store.get(&b).await.unwrap().as_deref(), Some("sealed-b"));
        assert_eq!(store.get(&c).await.unwrap().as_deref(), Some("sealed-c"));

        // Without a sid, every session of the sub goes; others stay.
        assert_eq!(store.revoke(None, Some("alice")).await.unwrap(), 2);
        assert_eq!(store.get(&b).await.unwrap(), None);
        assert_eq!(store.get(&c).await.unwrap(), None);
        assert_eq!(
            store.get(&other).await.unwrap().as_deref(),
            Some("sealed-o")
        );
        assert_eq!(store.revoke(None, None).await.unwrap(), 0);
    }
}
