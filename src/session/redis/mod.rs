//! The Redis session store: standalone (`redis://`, `rediss://`, Unix
//! socket), Sentinel and Cluster, built from the typed
//! [`config::RedisTopology`] that `config` parsed from `session.redis.url`
//! (this module never parses a URL, so `check` and `run` agree on it).
//!
//! Requests never connect: a background task holds the connection, probes
//! it at most [`PROBE_INTERVAL`] apart and reconnects, so a request during an
//! outage fails fast with 503 and the first one after recovery just works.
//!
//! With Sentinel, every probe re-asks the sentinels which node is the master
//! and checks `ROLE` on the connection, dropping a connection to a demoted
//! master at once; writes are acknowledged only once a replica has them
//! (`WAIT`), so a sign-out acknowledged just before a failover is never
//! undone by the old master resyncing. `READONLY` and unreplicated writes are
//! errors (503), never success.
//!
//! With Cluster, the one cluster connection follows `MOVED` through a
//! failover by itself, and a write counts only once a replica of its slot's
//! master has it (see [`cluster`]).

mod cluster;
mod sentinel;
mod topology;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cluster::{ReplicatedSlots, CLUSTER_PROBE_INTERVAL};
use redis::{AsyncConnectionConfig, Pipeline};

use crate::config;
use crate::metrics::{Dependency, Metrics};
use crate::telemetry::trace::{self, within};
use sentinel::Sentinels;
use topology::{build_topology, Conn, Topology};

/// How often the background task probes (and, when down, reconnects).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// With Sentinel, how often the sentinels are asked for the master: the
/// longest a switch announced by them goes unnoticed.
pub const SENTINEL_PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// The shortest pause between two probes, also when a request asks for an
/// early one (a `READONLY` answer, an unreplicated write).
const MIN_REPROBE: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for a replica's acknowledgement (`WAIT`, ms).
const WAIT_TIMEOUT_MS: u64 = 500;
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
    /// Sentinel: the master acknowledged a write no replica confirmed
    /// within the `WAIT` timeout, so a failover could lose it.
    #[error("redis: the write reached no replica (failover in progress?)")]
    NotReplicated,
}

/// The connection in use and what the last probe learnt about it.
struct Live {
    conn: Conn,
    /// Sentinel: the master's address this connection goes to.
    master: Option<(String, u16)>,
    /// Replicas a write must reach before it counts (`WAIT`): 1 when the
    /// sentinels see a healthy replica, else 0 (and always 0 without Sentinel).
    wait: usize,
    /// Cluster: the slots whose writes wait for a replica (empty elsewhere).
    replicated: ReplicatedSlots,
}

/// The Redis store's client and its one shared connection, kept up by
/// [`RedisStore::maintain`].
pub struct RedisStore {
    topology: Topology,
    live: ArcSwapOption<Live>,
    /// Asks the prober for an early probe.
    wake: tokio::sync::Notify,
    metrics: Metrics,
    /// Cluster: a probed view that covers fewer slots than the one in use,
    /// and since when probes keep giving it (see `RedisStore::settle_view`).
    narrowing: parking_lot::Mutex<Option<(ReplicatedSlots, std::time::Instant)>>,
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
            live: ArcSwapOption::empty(),
            wake: tokio::sync::Notify::new(),
            metrics,
            narrowing: parking_lot::Mutex::new(None),
        })
    }

    /// Whether the last probe or command found Redis answering.
    pub fn is_up(&self) -> bool {
        self.live.load().is_some()
    }

    fn live(&self) -> Result<Arc<Live>, RedisError> {
        self.live.load_full().ok_or(RedisError::Disconnected)
    }

    /// A command failed: for connection reasons, or `READONLY` (the node
    /// was demoted under us), drop the connection so the prober reconnects
    /// (to the current master), and report unavailability. A cluster
    /// connection is kept (see below).
    fn fail(&self, e: redis::RedisError) -> RedisError {
        if matches!(self.topology, Topology::Cluster(_)) {
            // The cluster connection reroutes by itself (one dead master
            // must not cost every other slot its connection): only have
            // the slot map's replicas re-read.
            self.wake.notify_one();
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_connection_refusal()
            || e.kind() == redis::ErrorKind::ReadOnly
        {
            self.set(None);
            self.wake.notify_one();
        }
        RedisError::Command(e.category().to_owned())
    }

    fn set(&self, live: Option<Live>) {
        let up = live.is_some();
        if self.is_up() != up {
            if up {
                tracing::info!("redis reachable");
            } else {
                tracing::warn!("redis unreachable");
            }
        }
        self.live.store(live.map(Arc::new));
        self.metrics.dependency(Dependency::Redis, up);
    }

    fn conn_config() -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
    }

    /// Holds the connection up for the life of the process.
    pub async fn maintain(&self) {
        let interval = match self.topology {
            Topology::Sentinel(_) => SENTINEL_PROBE_INTERVAL,
            Topology::Cluster(_) => CLUSTER_PROBE_INTERVAL,
            Topology::Single(_) => PROBE_INTERVAL,
        };
        loop {
            let probe = async {
                match &self.topology {
                    Topology::Sentinel(s) => self.probe_sentinel(s).await,
                    Topology::Cluster(c) => self.probe_cluster(c).await,
                    Topology::Single(_) => self.probe_direct().await,
                }
            };
            if tokio::time::timeout(CONNECT_TIMEOUT * 3, probe)
                .await
                .is_err()
            {
                self.set(None);
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = self.wake.notified() => tokio::time::sleep(MIN_REPROBE).await,
            }
        }
    }

    /// Single server: `PING`, reconnecting when it fails.
    async fn probe_direct(&self) {
        if let Some(live) = self.live.load_full() {
            if live.conn.cmd::<String>(&redis::cmd("PING")).await.is_ok() {
                return;
            }
        }
        let conn = match &self.topology {
            Topology::Single(c) => c
                .get_multiplexed_async_connection_with_config(&Self::conn_config())
                .await
                .map(Conn::Single),
            Topology::Cluster(_) | Topology::Sentinel(_) => return,
        };
        match conn {
            Ok(c) if c.cmd::<String>(&redis::cmd("PING")).await.is_ok() => self.set(Some(Live {
                conn: c,
                master: None,
                wait: 0,
                replicated: ReplicatedSlots::default(),
            })),
            Ok(_) => self.set(None),
            Err(e) => {
                tracing::debug!(error = %e.category(), "redis connect failed");
                self.set(None);
            }
        }
    }

    /// Sentinel: asks the sentinels for the master; keeps the connection
    /// only while it goes to that node and the node says it is a master.
    async fn probe_sentinel(&self, s: &Sentinels) {
        let current = self.live.load_full();
        let view = match s.master().await {
            Ok(view) => view,
            Err(e) => {
                // No sentinel answers: keep a connection that still goes to
                // a master (the sentinels' outage is not the data's).
                tracing::debug!(error = %e.category(), "no sentinel answered");
                match current {
                    Some(live) if is_master(&live.conn).await => {}
                    _ => self.set(None),
                }
                return;
            }
        };
        let wait = view.healthy_replicas.min(1);
        if let Some(live) = current {
            if live.master.as_ref() == Some(&view.addr) && is_master(&live.conn).await {
                if live.wait != wait {
                    self.set(Some(Live {
                        conn: live.conn.clone(),
                        master: live.master.clone(),
                        wait,
                        replicated: ReplicatedSlots::default(),
                    }));
                }
                return;
            }
            // A switch (or a demotion): no request may use the old node from now.
            tracing::warn!("redis master changed or demoted; switching to the sentinels' master");
            self.set(None);
        }
        let conn = match s.data_client(&view.addr) {
            Ok(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&Self::conn_config())
                    .await
            }
            Err(e) => Err(e),
        };
        match conn {
            Ok(c) => {
                let conn = Conn::Single(c);
                if is_master(&conn).await {
                    self.set(Some(Live {
                        conn,
                        master: Some(view.addr),
                        wait,
                        replicated: ReplicatedSlots::default(),
                    }));
                } else {
                    // Promotion not finished yet: the next probe retries.
                    self.set(None);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e.category(), "redis master connect failed");
                self.set(None);
            }
        }
    }

    /// After a write on `live`: with Sentinel, waits until a replica has it.
    async fn confirm(&self, live: &Live) -> Result<(), RedisError> {
        if live.wait == 0 {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        written_marker(&mut pipe, &format!("{PREFIX}written"));
        pipe.cmd("WAIT").arg(live.wait).arg(WAIT_TIMEOUT_MS);
        let replies = within(trace::redis("WAIT"), live.conn.values(&pipe))
            .await
            .map_err(|e| self.fail(e))?;
        let acked: i64 = replies
            .first()
            .and_then(|v| redis::from_redis_value(v).ok())
            .unwrap_or(0);
        if usize::try_from(acked).unwrap_or(0) < live.wait {
            // Likely a failover under way: have the sentinels asked now.
            self.wake.notify_one();
            return Err(RedisError::NotReplicated);
        }
        Ok(())
    }

    /// The sealed session stored under `id`, if any.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn get(&self, id: &[u8; 16]) -> Result<Option<String>, RedisError> {
        self.get_key(&session_key(id)).await
    }

    /// Writes the session and its `sid`/`sub` index entries: in one
    /// transaction on a single node, so a failure leaves nothing
    /// half-written; per key on a cluster, where the keys live in different
    /// slots (index entries first, so a session is never unindexed), each
    /// confirmed by a replica of its slot's master.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down, a command fails, or (Sentinel,
    /// Cluster) no replica confirmed the write.
    pub async fn put(
        &self,
        id: &[u8; 16],
        sealed: &str,
        ttl_secs: u64,
        sid: Option<&str>,
        sub: &str,
    ) -> Result<(), RedisError> {
        let live = self.live()?;
        let member = hex::encode(id);
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
        if matches!(live.conn, Conn::Single(_)) {
            set.atomic();
            for index in &indexes {
                add_index(&mut set, index);
            }
        } else {
            for index in &indexes {
                let mut pipe = redis::pipe();
                add_index(&mut pipe, index);
                self.cluster_write(&live, pipe, index, "SADD").await?;
            }
            return self
                .cluster_write(&live, set, &session_key(id), "SET")
                .await
                .map(drop);
        }
        within(trace::redis("SET"), live.conn.pipe(&set))
            .await
            .map_err(|e| self.fail(e))?;
        self.confirm(&live).await
    }

    /// Deletes the session stored under `id` (sign-out).
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down, the command fails, or (Sentinel,
    /// Cluster) no replica confirmed the delete.
    pub async fn delete(&self, id: &[u8; 16]) -> Result<(), RedisError> {
        let live = self.live()?;
        self.del(&live, &session_key(id)).await?;
        self.confirm(&live).await
    }

    /// Deletes the sessions of a logout token: those of its `sid` when it
    /// names one (Back-Channel Logout 1.0 2.4: one IdP session), else every
    /// session of its `sub`. One key per command, so a cluster routes each
    /// to its own slot.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down, a command fails, or (Sentinel,
    /// Cluster) no replica confirmed the deletes.
    pub async fn revoke(&self, sid: Option<&str>, sub: Option<&str>) -> Result<usize, RedisError> {
        let live = self.live()?;
        let index = match (sid, sub) {
            (Some(sid), _) => index_key("sid", sid),
            (None, Some(sub)) => index_key("sub", sub),
            (None, None) => return Ok(0),
        };
        let members: Vec<String> = within(
            trace::redis("SMEMBERS"),
            live.conn.cmd(redis::cmd("SMEMBERS").arg(&index)),
        )
        .await
        .map_err(|e| self.fail(e))?;
        let mut removed = 0;
        for m in &members {
            removed += self.del(&live, &format!("{PREFIX}session:{m}")).await?;
        }
        self.del(&live, &index).await?;
        self.confirm(&live).await?;
        Ok(removed)
    }

    // === coordination between replicas (refresh single-flight) ===

    /// `SET key owner NX PX ttl`: true when this caller now holds the lock.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn try_lock(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let live = self.live()?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let set: Option<String> = within(
            trace::redis("SET"),
            live.conn.cmd(
                redis::cmd("SET")
                    .arg(key)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms),
            ),
        )
        .await
        .map_err(|e| self.fail(e))?;
        Ok(set.is_some())
    }

    /// Releases a lock taken by [`RedisStore::try_lock`], only if `owner`
    /// still holds it (compare-and-delete in one script).
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn unlock(&self, key: &str, owner: &str) -> Result<(), RedisError> {
        let live = self.live()?;
        let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                      return redis.call('DEL', KEYS[1]) else return 0 end";
        within(
            trace::redis("EVAL"),
            live.conn
                .cmd::<i64>(redis::cmd("EVAL").arg(script).arg(1).arg(key).arg(owner)),
        )
        .await
        .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Stores `value` under `key` for `ttl` (a short-lived shared result).
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn put_key(&self, key: &str, value: &str, ttl: Duration) -> Result<(), RedisError> {
        let live = self.live()?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        within(
            trace::redis("SET"),
            live.conn
                .cmd::<()>(redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ttl_ms)),
        )
        .await
        .map_err(|e| self.fail(e))
    }

    /// The value under `key`, if any.
    ///
    /// # Errors
    /// [`RedisError`] when Redis is down or the command fails.
    pub async fn get_key(&self, key: &str) -> Result<Option<String>, RedisError> {
        let live = self.live()?;
        within(
            trace::redis("GET"),
            live.conn.cmd(redis::cmd("GET").arg(key)),
        )
        .await
        .map_err(|e| self.fail(e))
    }
}

/// Whether the node behind `conn` answers `ROLE` as a master.
async fn is_master(conn: &Conn) -> bool {
    matches!(
        conn.cmd::<redis::Role>(&redis::cmd("ROLE")).await,
        Ok(redis::Role::Primary { .. })
    )
}

/// How long a write marker lives (ms): only until `WAIT` has counted it.
const MARKER_TTL_MS: u64 = 10_000;

/// Adds, before a `WAIT`, a write that always reaches the replication
/// stream. `WAIT` counts the replicas that have this connection's last
/// write; a retried `DEL` or `SADD` that changes nothing writes nothing, and
/// on a connection made since the first try (a reconnect) `WAIT` would then
/// pass at once, however far behind the replica is. The marker moves the
/// connection's offset to now, so the replica that acknowledges it has every
/// earlier write, the first try's included (the stream is ordered).
fn written_marker(pipe: &mut Pipeline, marker: &str) {
    pipe.cmd("SET")
        .arg(marker)
        .arg(1)
        .arg("PX")
        .arg(MARKER_TTL_MS)
        .ignore();
}

/// `authgate:session:<id in lower-case hex>`, the key of a session's sealed
/// value. Built on every Redis session request: `hex::encode`, not `fmt`
/// per byte (callgrind: ~4,700 instructions per request).
fn session_key(id: &[u8; 16]) -> String {
    [PREFIX, "session:", &hex::encode(id)].concat()
}

fn index_key(kind: &str, value: &str) -> String {
    // Hash the value: `sub`/`sid` are IdP-controlled strings of any length.
    use sha2::Digest;
    format!(
        "{PREFIX}{kind}:{}",
        hex::encode(sha2::Sha256::digest(value.as_bytes()))
    )
}

/// The keys of one refresh token's single-flight: the lock and the shared
/// result, named by a digest of the token (never the token itself).
pub fn refresh_keys(refresh_token: &str) -> (String, String) {
    use sha2::Digest;
    let d = hex::encode(sha2::Sha256::digest(
        [
            b"authgate refresh key\0".as_slice(),
            refresh_token.as_bytes(),
        ]
        .concat(),
    ));
    (
        format!("{PREFIX}refresh-lock:{d}"),
        format!("{PREFIX}refresh-result:{d}"),
    )
}

#[cfg(test)]
pub(crate) mod tests;
