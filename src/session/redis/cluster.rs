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

/// How often a cluster is probed (`CLUSTER SLOTS`): the longest a changed
/// replica set goes unnoticed for the choice to `WAIT`.
pub(super) const CLUSTER_PROBE_INTERVAL: std::time::Duration =
    std::time::Duration::from_millis(500);
/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The slots whose master has at least one replica up, as `CLUSTER SLOTS`
/// last listed them (Redis leaves failed replicas and replicas that never
/// synced out of that list, so a master whose replica died writes without
/// waiting instead of failing every write). Empty outside a cluster.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct ReplicatedSlots(Vec<u64>);

impl ReplicatedSlots {
    /// From a `CLUSTER SLOTS` reply (RESP2 or RESP3): each entry is
    /// `[first slot, last slot, master, replica…]`. None when the reply
    /// has another shape.
    pub(super) fn parse(reply: &Value) -> Option<Self> {
        let Value::Array(ranges) = reply else {
            return None;
        };
        let mut bits = vec![0u64; SLOTS / 64];
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let bound = |i: usize| -> Option<usize> {
                let n: i64 = redis::from_redis_value(fields.get(i)?).ok()?;
                usize::try_from(n).ok().filter(|n| *n < SLOTS)
            };
            let (first, last) = (bound(0)?, bound(1)?);
            if fields.len() > 3 {
                for slot in first..=last {
                    bits[slot / 64] |= 1 << (slot % 64);
                }
            }
        }
        Some(ReplicatedSlots(bits))
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
    let reply: Value = conn.cmd(redis::cmd("CLUSTER").arg("SLOTS")).await?;
    ReplicatedSlots::parse(&reply).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::ParseError,
            "unexpected CLUSTER SLOTS reply",
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
                    if view != live.replicated {
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
                // the slot map now.
                self.wake.notify_one();
                return Err(RedisError::NotReplicated);
            }
        }
        Ok(replies)
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

    fn node(port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(b"127.0.0.1".to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(first: i64, last: i64, nodes: usize) -> Value {
        let mut fields = vec![Value::Int(first), Value::Int(last)];
        fields.extend((0..nodes).map(|i| node(7000 + i as i64)));
        Value::Array(fields)
    }

    #[test]
    fn only_slots_of_masters_with_a_replica_wait() {
        let view = ReplicatedSlots::parse(&Value::Array(vec![
            range(0, 5460, 2),
            range(5461, 10922, 1),
            range(10923, 16383, 3),
        ]))
        .unwrap();
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
        assert!(!ReplicatedSlots::default().covers("k0"));
        assert!(ReplicatedSlots::parse(&Value::Int(1)).is_none());
        assert!(ReplicatedSlots::parse(&Value::Array(vec![range(0, 16384, 2)])).is_none());
    }
}
