//! The Redis session store: standalone (`redis://`, `rediss://`), Sentinel
//! (`redis+sentinel://h1:26379,h2:26379/master[/db]`) and Cluster
//! (`redis+cluster://h1:6379,h2:6379`).
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

pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const PREFIX: &str = "authgate:";

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("session.redis.url: {0}")]
    Url(String),
    #[error("redis is not connected")]
    Disconnected,
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

pub struct RedisStore {
    topology: Topology,
    conn: ArcSwapOption<Conn>,
    metrics: Metrics,
}

impl RedisStore {
    pub fn new(cfg: &config::Redis, metrics: Metrics) -> Result<Self, RedisError> {
        let topology = parse_topology(&cfg.url)?;
        metrics.dependency(Dependency::Redis, false);
        Ok(RedisStore {
            topology,
            conn: ArcSwapOption::empty(),
            metrics,
        })
    }

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

/// Splits `scheme://[auth@]h1:p1,h2:p2[/path]` into its parts.
fn split_multi(url: &str) -> Option<(&str, Option<&str>, Vec<&str>, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (auth, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return None;
    }
    Some((scheme, auth, hosts, path))
}

fn parse_topology(url: &str) -> Result<Topology, RedisError> {
    let bad = |m: &str| RedisError::Url(m.to_owned());
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "redis" | "rediss" | "redis+unix" | "unix" => redis::Client::open(url)
            .map(Topology::Single)
            .map_err(|e| RedisError::Url(e.to_string())),
        "redis+cluster" | "rediss+cluster" => {
            let (_, auth, hosts, _) = split_multi(url).ok_or_else(|| bad("no cluster nodes"))?;
            let node_scheme = if scheme.starts_with("rediss") {
                "rediss"
            } else {
                "redis"
            };
            let nodes: Vec<String> = hosts
                .iter()
                .map(|h| match auth {
                    Some(a) => format!("{node_scheme}://{a}@{h}"),
                    None => format!("{node_scheme}://{h}"),
                })
                .collect();
            redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map(Topology::Cluster)
                .map_err(|e| RedisError::Url(e.to_string()))
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let (_, auth, hosts, path) =
                split_multi(url).ok_or_else(|| bad("no sentinel nodes"))?;
            let mut parts = path.trim_start_matches('/').split('/');
            let master = parts
                .next()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| bad("sentinel URL needs /<master name>"))?;
            let db: i64 = match parts.next() {
                Some(d) if !d.is_empty() => d.parse().map_err(|_| bad("bad database number"))?,
                _ => 0,
            };
            let sentinels: Vec<String> = hosts.iter().map(|h| format!("redis://{h}")).collect();
            let node_url = match auth {
                Some(a) => format!("redis://{a}@placeholder/{db}"),
                None => format!("redis://placeholder/{db}"),
            };
            let node_info = redis::IntoConnectionInfo::into_connection_info(node_url.as_str())
                .map_err(|e| RedisError::Url(e.to_string()))?;
            let tls = scheme
                .starts_with("rediss")
                .then_some(redis::TlsMode::Secure);
            let info = redis::sentinel::SentinelNodeConnectionInfo {
                tls_mode: tls,
                redis_connection_info: Some(node_info.redis),
            };
            redis::sentinel::SentinelClient::build(
                sentinels,
                master.to_owned(),
                Some(info),
                redis::sentinel::SentinelServerType::Master,
            )
            .map(|c| Topology::Sentinel(tokio::sync::Mutex::new(c)))
            .map_err(|e| RedisError::Url(e.to_string()))
        }
        _ => Err(bad(
            "scheme must be redis, rediss, redis+sentinel or redis+cluster",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms_parse_into_topologies() {
        assert!(matches!(
            parse_topology("redis://127.0.0.1:6379/0"),
            Ok(Topology::Single(_))
        ));
        assert!(matches!(
            parse_topology("rediss://u:p@r.example.com:6380/1"),
            Ok(Topology::Single(_))
        ));
        assert!(matches!(
            parse_topology("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7000"),
            Ok(Topology::Cluster(_))
        ));
        assert!(matches!(
            parse_topology("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster/2"),
            Ok(Topology::Sentinel(_))
        ));
        assert!(parse_topology("redis+sentinel://10.0.0.1:26379").is_err());
        assert!(parse_topology("http://x").is_err());
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
        let cfg = config::Redis {
            url: format!("redis://127.0.0.1:{port}/0"),
        };
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
