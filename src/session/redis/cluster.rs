//! Redis Cluster durability across a failover: which slots' masters have a
//! replica a failover could promote, and writes that count only once such
//! a replica has them.
//!
//! The redis crate's cluster client follows `MOVED` and re-reads the slot
//! map by itself after a failover, so the store keeps one cluster
//! connection through it (a dead master's slots answer 503 until its
//! replica takes over; every other slot keeps working). What it does not
//! do is make a write durable: a master acknowledges a `SET` or `DEL`
//! before its replica has it, and `kill -9` of that master then promotes a
//! replica without it — a sign-out undone. So each write to a slot whose
//! master has a replica carries `WAIT 1 500` in the same pipeline: it runs
//! on the master and connection that took the write (a separate `WAIT` is
//! sent by the crate to every master, on other connections), and fewer
//! than one acknowledgement is [`RedisError::NotReplicated`] (503).

use redis::cluster::ClusterClient;
use redis::{Pipeline, Value};

use super::topology::Conn;
use super::{written_marker, Live, RedisError, RedisStore, WAIT_TIMEOUT_MS};
use crate::telemetry::trace::{self, within};

/// How often a cluster is probed (`CLUSTER NODES`): the longest a changed
/// replica set goes unnoticed for the choice to `WAIT`.
pub(super) const CLUSTER_PROBE_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(500);
/// How long probes must keep showing fewer slots with a replica before
/// writes to those slots stop waiting for one (see `settle_view`).
const NARROW_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The slots whose master has at least one replica the cluster has not
/// marked failed, as `CLUSTER NODES` last listed them (so a master whose
/// replica died writes without waiting instead of failing every write).
/// Empty outside a cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct ReplicatedSlots(Vec<u64>);

impl ReplicatedSlots {
    /// From a `CLUSTER NODES` reply: one line per node, `id addr flags
    /// master-id ping pong epoch link slot…` (Redis Cluster specification).
    /// A master's slots count when at least one replica names it as its
    /// master and is not marked `fail` by the cluster. A replica that is
    /// only late (`fail?`), resyncing or just reconnected still counts
    /// (`CLUSTER SLOTS` leaves out a replica reporting offset 0, and a write
    /// made without `WAIT` then is lost if the master dies before the
    /// replica caught up). None when a line has another shape.
    pub(super) fn from_cluster_nodes(reply: &str) -> Option<Self> {
        let mut replicated_masters: Vec<&str> = Vec::new();
        let mut masters: Vec<(&str, Vec<&str>)> = Vec::new();
        for line in reply.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (id, flags, master) = (*fields.first()?, *fields.get(2)?, *fields.get(3)?);
            let flags: Vec<&str> = flags.split(',').collect();
            if flags.contains(&"slave") {
                if !flags.contains(&"fail") && !flags.contains(&"noaddr") && master != "-" {
                    replicated_masters.push(master);
                }
            } else if flags.contains(&"master") {
                masters.push((id, fields.get(8..).unwrap_or_default().to_vec()));
            }
        }
        let mut bits = vec![0u64; SLOTS / 64];
        for (id, ranges) in masters {
            if !replicated_masters.contains(&id) {
                continue;
            }
            // `[slot->-id]` / `[slot-<-id]` mark a slot migrating or
            // importing; the slot itself is in the owner's plain ranges.
            for range in ranges.into_iter().filter(|r| !r.starts_with('[')) {
                let (first, last) = match range.split_once('-') {
                    Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
                    None => {
                        let one = range.parse::<usize>().ok()?;
                        (one, one)
                    }
                };
                if first > last || last >= SLOTS {
                    return None;
                }
                for slot in first..=last {
                    bits[slot / 64] |= 1 << (slot % 64);
                }
            }
        }
        Some(ReplicatedSlots(bits))
    }

    /// Whether every slot covered here is covered by `other` too.
    pub(super) fn within(&self, other: &ReplicatedSlots) -> bool {
        self.0.iter().enumerate().all(|(i, w)| {
            let o = other.0.get(i).copied().unwrap_or(0);
            w & !o == 0
        })
    }

    /// The slots covered by either view.
    pub(super) fn union(&self, other: &ReplicatedSlots) -> ReplicatedSlots {
        let len = self.0.len().max(other.0.len());
        ReplicatedSlots(
            (0..len)
                .map(|i| self.0.get(i).copied().unwrap_or(0) | other.0.get(i).copied().unwrap_or(0))
                .collect(),
        )
    }

    /// How many slots' writes wait for a replica.
    pub(super) fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// Whether a write to `key` must reach a replica.
    pub(super) fn covers(&self, key: &str) -> bool {
        let slot = usize::from(key_slot(key.as_bytes()));
        self.0
            .get(slot / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }
}

/// The hash slot of `key` (Redis Cluster specification, "Keys hash tags":
/// CRC16-XMODEM of the key, or of the first non-empty `{…}` in it, mod 16384).
pub(super) fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|b| *b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    // 16384 divides 65536: the remainder always fits.
    crc16::State::<crc16::XMODEM>::calculate(hashed) % 16384
}

/// Which slots' masters have replicas, asked of one node of the cluster.
async fn replicated_slots(conn: &Conn) -> redis::RedisResult<ReplicatedSlots> {
    let reply: String = conn.cmd(redis::cmd("CLUSTER").arg("NODES")).await?;
    ReplicatedSlots::from_cluster_nodes(&reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::ParseError,
            "unexpected CLUSTER NODES reply",
        ))
    })
}

impl RedisStore {
    /// Cluster: refreshes the replica view on the connection in use; when
    /// that fails, a new connection from the seed nodes replaces it (or,
    /// when none can be made, requests fail fast with 503).
    pub(super) async fn probe_cluster(&self, client: &ClusterClient) {
        if let Some(live) = self.live.load_full() {
            match replicated_slots(&live.conn).await {
                Ok(view) => {
                    let view = self.settle_view(view, &live.replicated);
                    if view != live.replicated {
                        tracing::info!(
                            slots = view.count(),
                            "redis cluster: slots whose writes wait for a replica changed"
                        );
                        self.set(Some(Live {
                            conn: live.conn.clone(),
                            master: None,
                            wait: 0,
                            replicated: view,
                        }));
                    }
                    return;
                }
                Err(e) => tracing::debug!(error = %e.category(), "redis cluster probe failed"),
            }
        }
        let conn = match client.get_async_connection().await {
            Ok(c) => Conn::Cluster(c),
            Err(e) => {
                tracing::debug!(error = %e.category(), "redis cluster connect failed");
                self.set(None);
                return;
            }
        };
        match replicated_slots(&conn).await {
            Ok(view) => self.set(Some(Live {
                conn,
                master: None,
                wait: 0,
                replicated: view,
            })),
            Err(e) => {
                tracing::debug!(error = %e.category(), "redis cluster probe failed");
                self.set(None);
            }
        }
    }

    /// Cluster: runs `pipe` (commands on `key`'s slot only) on that slot's
    /// master, followed by `WAIT 1` when the master has a replica; the
    /// pipeline's replies (without the `WAIT`'s).
    ///
    /// # Errors
    /// [`RedisError`] when the pipeline fails, or
    /// [`RedisError::NotReplicated`] when no replica confirmed it in time.
    pub(super) async fn cluster_write(
        &self,
        live: &Live,
        mut pipe: Pipeline,
        key: &str,
        op: &'static str,
    ) -> Result<Vec<Value>, RedisError> {
        let wait = live.replicated.covers(key);
        if wait {
            // The marker shares `key`'s slot (its hash tag is the whole key,
            // and keys here are hex, never braces): see `written_marker`.
            let marker = format!("{{{key}}}:written");
            written_marker(&mut pipe, &marker);
            pipe.cmd("WAIT").arg(1).arg(WAIT_TIMEOUT_MS);
        }
        let mut replies = within(trace::redis(op), live.conn.values(&pipe))
            .await
            .map_err(|e| self.fail(e))?;
        if wait {
            let acked: i64 = replies
                .pop()
                .and_then(|v| redis::from_redis_value(&v).ok())
                .unwrap_or(0);
            if acked < 1 {
                // The replica may be gone (a failover under way): re-read
                // the cluster's nodes now.
                self.wake.notify_one();
                return Err(RedisError::NotReplicated);
            }
        }
        Ok(replies)
    }

    /// The view to use given a freshly probed one: more covered slots
    /// apply at once; fewer only once probes have given that same view for
    /// [`NARROW_AFTER`]. While a failover is being announced, or a replica
    /// reconnects, a node's view can list a master with no replica (the old
    /// master not yet following): a write made then without `WAIT` is lost
    /// if that master dies before its replica caught up (measured by
    /// `tests/redis_cluster.rs`). Until then the wider view stays, and a
    /// write with no replica to confirm it is a 503 (fail closed) for at
    /// most that long after a replica really left.
    fn settle_view(&self, probed: ReplicatedSlots, current: &ReplicatedSlots) -> ReplicatedSlots {
        let mut narrowing = self.narrowing.lock();
        if probed.within(current) && probed != *current {
            match narrowing.as_ref() {
                Some((seen, since)) if *seen == probed => {
                    if since.elapsed() >= NARROW_AFTER {
                        *narrowing = None;
                        return probed;
                    }
                }
                _ => *narrowing = Some((probed.clone(), std::time::Instant::now())),
            }
            return current.clone();
        }
        *narrowing = None;
        if current.within(&probed) {
            probed
        } else {
            // Some slots gained, some lost: gain now, lose later.
            current.union(&probed)
        }
    }

    /// `DEL key` on any topology: how many keys it removed. On a cluster,
    /// confirmed by a replica like every cluster write; elsewhere the
    /// caller's [`RedisStore::confirm`] covers it.
    pub(super) async fn del(&self, live: &Live, key: &str) -> Result<usize, RedisError> {
        let removed: i64 = if matches!(live.conn, Conn::Cluster(_)) {
            let mut pipe = redis::pipe();
            pipe.cmd("DEL").arg(key);
            let replies = self.cluster_write(live, pipe, key, "DEL").await?;
            replies
                .first()
                .and_then(|v| redis::from_redis_value(v).ok())
                .unwrap_or(0)
        } else {
            within(
                trace::redis("DEL"),
                live.conn.cmd(redis::cmd("DEL").arg(key)),
            )
            .await
            .map_err(|e| self.fail(e))?
        };
        Ok(usize::try_from(removed).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_cluster_specification() {
        // The specification's CRC16 check value and its hash-tag examples.
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    /// A `CLUSTER NODES` reply: masters a (0-5460), b (5461-10922, its
    /// replica failed), c (10923-16383, with a slot migrating), and the
    /// replicas of a (one late, `fail?`) and c.
    const NODES: &str = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16382 16383 [16383->-a]
d 127.0.0.1:7003@17003 slave,fail? a 0 0 1 connected
e 127.0.0.1:7004@17004 slave,fail b 0 0 2 disconnected
f 127.0.0.1:7005@17005 slave c 0 0 3 connected
";

    #[test]
    fn only_slots_of_masters_with_a_replica_not_failed_wait() {
        let view = ReplicatedSlots::from_cluster_nodes(NODES).unwrap();
        let in_slot = |slot: u16| {
            (0u32..)
                .map(|i| format!("k{i}"))
                .find(|k| key_slot(k.as_bytes()) == slot)
                .unwrap()
        };
        assert!(view.covers(&in_slot(0)));
        assert!(view.covers(&in_slot(5460)));
        assert!(!view.covers(&in_slot(5461)));
        assert!(!view.covers(&in_slot(10922)));
        assert!(view.covers(&in_slot(16383)));
        assert!(view.covers(&in_slot(16382)));
        assert!(!ReplicatedSlots::default().covers("k0"));
        assert_eq!(view.count(), 5461 + 5461);
        // Once a's replica is marked failed too, a's slots no longer wait;
        // that view lies within this one, and their union is this one.
        let failed = NODES.replace("slave,fail? a", "slave,fail a");
        let narrower = ReplicatedSlots::from_cluster_nodes(&failed).unwrap();
        assert!(!narrower.covers(&in_slot(0)));
        assert!(narrower.covers(&in_slot(16383)));
        assert!(narrower.within(&view) && !view.within(&narrower));
        assert!(narrower.union(&view) == view && view.union(&narrower) == view);
        assert!(ReplicatedSlots::from_cluster_nodes("a b").is_none());
        let beyond = NODES.replace("10923-16382", "10923-16384");
        assert!(ReplicatedSlots::from_cluster_nodes(&beyond).is_none());
    }
}
