//! Redis Sentinel discovery: which node is the master right now, and how
//! many healthy replicas follow it, asked of the sentinels on every probe.
//!
//! The redis crate's `SentinelClient` answers "a master" once, at connect
//! time; after `SENTINEL FAILOVER` the old master keeps answering `PING`
//! for seconds (until the sentinels demote it), and writes acknowledged in
//! that window are lost when it resyncs. So the store re-asks here and
//! compares (see `RedisStore::maintain`).

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisResult};

use super::topology::{node_client, redis_info, tcp_addr};
use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config;
use crate::domain::Secret;

/// What the sentinels say about the monitored master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MasterView {
    /// The master's announced address.
    pub(super) addr: (String, u16),
    /// Replicas the sentinels see up and following that master: a write
    /// the master acknowledged is only safe once one of them has it
    /// (`WAIT`), since one of them is what a failover promotes.
    pub(super) healthy_replicas: usize,
}

/// The sentinels of one monitored master, and how to reach its data nodes.
pub(super) struct Sentinels {
    nodes: Vec<config::RedisNode>,
    master: String,
    /// `session.redis.sentinel_password`, else none.
    password: Option<Secret<String>>,
    /// The master's password, tried when a sentinel answers `NOAUTH` and no
    /// sentinel password is set (sentinels sharing the master's password).
    fallback: Option<Secret<String>>,
    data: config::Redis,
    /// `SSL_CERT_FILE`'s CAs for TLS to the master (`rediss+sentinel://`),
    /// else None: the built-in web PKI roots.
    roots: Option<redis::TlsCertificates>,
    /// The last sentinel that answered, kept open between probes.
    cached: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl Sentinels {
    pub(super) fn new(
        cfg: &config::Redis,
        nodes: &[config::RedisNode],
        master: &str,
        roots: Option<redis::TlsCertificates>,
    ) -> Self {
        Sentinels {
            nodes: nodes.to_vec(),
            master: master.to_owned(),
            password: cfg.sentinel_password.clone(),
            fallback: cfg
                .password
                .clone()
                .filter(|_| cfg.sentinel_password.is_none()),
            data: cfg.clone(),
            roots,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The client for the data node at `addr` (the master's credentials,
    /// db, protocol and TLS, verified against the same roots as a single
    /// `rediss://` server's).
    pub(super) fn data_client(&self, addr: &(String, u16)) -> RedisResult<redis::Client> {
        let node = config::RedisNode {
            host: addr.0.clone(),
            port: addr.1,
        };
        node_client(
            redis::ConnectionInfo {
                addr: tcp_addr(&node, self.data.tls),
                redis: redis_info(&self.data),
            },
            self.roots.as_ref(),
        )
    }

    /// Asks the sentinels, in order, until one answers: the master's address
    /// and its healthy replicas.
    ///
    /// # Errors
    /// The last sentinel's error when none answers, or when none knows the
    /// master (`MasterNameNotFoundBySentinel`).
    pub(super) async fn master(&self) -> RedisResult<MasterView> {
        let mut cached = self.cached.lock().await;
        if let Some(conn) = cached.as_mut() {
            match self.ask(conn).await {
                Ok(view) => return Ok(view),
                Err(_) => *cached = None,
            }
        }
        let mut last = redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "no sentinel configured",
        ));
        for node in &self.nodes {
            match self.open(node).await {
                Ok(mut conn) => match self.ask(&mut conn).await {
                    Ok(view) => {
                        *cached = Some(conn);
                        return Ok(view);
                    }
                    Err(e) => last = e,
                },
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn open(&self, node: &config::RedisNode) -> RedisResult<MultiplexedConnection> {
        let first = self.connect(node, self.password.as_ref()).await;
        match (first, &self.fallback) {
            (Err(e), Some(master_password)) if is_noauth(&e) => {
                self.connect(node, Some(master_password)).await
            }
            (r, _) => r,
        }
    }

    async fn connect(
        &self,
        node: &config::RedisNode,
        password: Option<&Secret<String>>,
    ) -> RedisResult<MultiplexedConnection> {
        let info = redis::ConnectionInfo {
            // Sentinels are asked in plain TCP (as the README says).
            addr: tcp_addr(node, false),
            redis: redis::RedisConnectionInfo {
                password: password.map(|p| p.expose().clone()),
                ..Default::default()
            },
        };
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        let mut conn = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        // A NOAUTH shows only on the first command when no password is sent.
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(conn)
    }

    async fn ask(&self, conn: &mut MultiplexedConnection) -> RedisResult<MasterView> {
        let addr: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master)
            .query_async(conn)
            .await?;
        let Some((host, port)) = addr else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::MasterNameNotFoundBySentinel,
                "master name not known to the sentinel",
            )));
        };
        let port: u16 = port.parse().map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::ParseError, "sentinel: bad master port"))
        })?;
        let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("replicas")
            .arg(&self.master)
            .query_async(conn)
            .await?;
        let healthy_replicas = replicas
            .iter()
            .filter(|r| replica_follows(r, &host, port))
            .count();
        Ok(MasterView {
            addr: (host, port),
            healthy_replicas,
        })
    }
}

/// Whether a `SENTINEL replicas` entry is up and set to replicate from
/// `host:port`. Its replication link may be down for a moment (a replica
/// reconnecting, an old master resyncing after a failover): it still
/// counts, since a failover could promote it, and a write it has not
/// confirmed within `WAIT`'s timeout is a 503 (fail closed) rather than an
/// acknowledgement it could lose. An old master that has not been
/// reconfigured yet names no master (or another one) and does not count.
fn replica_follows(r: &std::collections::HashMap<String, String>, host: &str, port: u16) -> bool {
    let flags = r.get("flags").map(String::as_str).unwrap_or("");
    let down = flags
        .split(',')
        .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
    !down
        && r.get("master-host").map(String::as_str) == Some(host)
        && r.get("master-port").and_then(|p| p.parse::<u16>().ok()) == Some(port)
}

fn is_noauth(e: &redis::RedisError) -> bool {
    e.code() == Some("NOAUTH") || e.kind() == redis::ErrorKind::AuthenticationFailed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_live_replicas_of_this_master_count_linked_or_reconnecting() {
        let ok = [
            ("flags", "slave"),
            ("master-link-status", "ok"),
            ("master-host", "10.0.0.1"),
            ("master-port", "6379"),
        ];
        assert!(replica_follows(&entry(&ok), "10.0.0.1", 6379));
        assert!(!replica_follows(&entry(&ok), "10.0.0.2", 6379));
        let mut down = ok;
        down[0] = ("flags", "s_down,slave");
        assert!(!replica_follows(&entry(&down), "10.0.0.1", 6379));
        // Reconnecting: still a replica a failover could promote.
        let mut unlinked = ok;
        unlinked[1] = ("master-link-status", "err");
        assert!(replica_follows(&entry(&unlinked), "10.0.0.1", 6379));
        let mut disconnected = ok;
        disconnected[0] = ("flags", "slave,disconnected");
        assert!(!replica_follows(&entry(&disconnected), "10.0.0.1", 6379));
    }
}
