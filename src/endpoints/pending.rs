//! Where a pending login's long return URL waits while the browser is at the
//! IdP: this process's bounded table, and (with `session.store: redis`)
//! Redis, so a callback that lands on another replica still finds it.
//!
//! Why not the flow cookie: a return URL of several KB would make the CSRF
//! cookie exceed the 4,096 bytes browsers keep, and a few such flows in one
//! browser would exceed the 8 KiB header line that nginx and Envoy accept.
//! Why not `state` (oauth2-proxy's choice): it travels through the IdP's
//! authorization URL and back in the callback's request line, where
//! Keycloak's 4 KiB initial-line limit and nginx's 8 KiB refuse it. Short
//! targets (the common case) stay inline in the flow cookie and need neither.
//!
//! Both homes are bounded, so an anonymous client that opens logins with
//! huge URLs cannot grow memory or Redis without limit: the table keeps at
//! most [`MEMORY_BUDGET`] bytes (oldest forgotten first), and each process
//! writes at most [`REDIS_BUDGET`] bytes of targets to Redis per flow
//! lifetime. A target that is forgotten lands on its path (kept in the
//! cookie), never on a failed login.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use base64::Engine as _;
use parking_lot::Mutex;

use crate::gate::FLOW_TTL;
use crate::session::codec::SessionCodec;
use crate::session::redis::RedisStore;

/// Bytes of targets (and spent-flow targets) this process keeps in memory.
pub const MEMORY_BUDGET: usize = 16 * 1024 * 1024;
/// Bytes of targets one process may write to Redis within one [`FLOW_TTL`].
pub const REDIS_BUDGET: usize = 16 * 1024 * 1024;

/// What the table holds under one key.
#[derive(Default)]
struct Table {
    order: VecDeque<(Instant, String)>,
    entries: HashMap<String, String>,
    bytes: usize,
    /// Redis writes within the last [`FLOW_TTL`]: (when, bytes).
    redis_writes: VecDeque<(Instant, usize)>,
    redis_bytes: usize,
}

impl Table {
    fn expire(&mut self, now: Instant, incoming: usize) {
        while let Some((at, _)) = self.order.front() {
            let stale = now.duration_since(*at) >= FLOW_TTL;
            if !stale && self.bytes + incoming <= MEMORY_BUDGET {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                if let Some(v) = self.entries.remove(&key) {
                    self.bytes -= v.len() + key.len();
                }
            }
        }
        while let Some((at, n)) = self.redis_writes.front() {
            if now.duration_since(*at) < FLOW_TTL {
                break;
            }
            self.redis_bytes -= n;
            self.redis_writes.pop_front();
        }
    }

    fn insert(&mut self, key: String, value: String, now: Instant) {
        let size = key.len() + value.len();
        if size > MEMORY_BUDGET {
            return;
        }
        self.expire(now, size);
        if let Some(old) = self.entries.insert(key.clone(), value) {
            self.bytes -= old.len() + key.len();
        }
        self.bytes += size;
        self.order.push_back((now, key));
    }
}

/// The pending-target table of one process (see the module doc).
#[derive(Default)]
pub struct PendingTargets {
    table: Mutex<Table>,
}

/// Redis keys of pending targets live beside sessions under random ids;
/// the sealed value is bound to this label so it never opens as a session.
const AAD: &[u8] = b"authgate pending target";

fn key_of(id: &[u8; 16]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

fn id_of(key: &str) -> Option<[u8; 16]> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .ok()?;
    raw.try_into().ok()
}

impl PendingTargets {
    /// Keeps `target` for one flow lifetime and returns its key (22
    /// base64url characters, for the flow cookie). With `redis`, also
    /// writes it there within this process's budget; a Redis failure only
    /// means another replica will not find it.
    pub async fn put(
        &self,
        target: &str,
        codec: &SessionCodec,
        redis: Option<&RedisStore>,
    ) -> String {
        let id: [u8; 16] = crate::domain::random::bytes();
        let key = key_of(&id);
        let now = Instant::now();
        let to_redis = {
            let mut t = self.table.lock();
            t.insert(format!("t:{key}"), target.to_owned(), now);
            let fits = t.redis_bytes + target.len() <= REDIS_BUDGET;
            if fits && redis.is_some() {
                t.redis_bytes += target.len();
                t.redis_writes.push_back((now, target.len()));
            }
            fits
        };
        if let Some(r) = redis.filter(|_| to_redis) {
            let sealed = codec.seal(&[AAD, &id].concat(), target.as_bytes());
            if let Err(e) = r.put(&id, &sealed, FLOW_TTL.as_secs(), None, "").await {
                tracing::debug!(error = %e, "pending return URL kept in this process only");
            }
        }
        key
    }

    /// The target kept under `key`: this process first, then Redis.
    pub async fn get(
        &self,
        key: &str,
        codec: &SessionCodec,
        redis: Option<&RedisStore>,
    ) -> Option<String> {
        if let Some(t) = self.table.lock().entries.get(&format!("t:{key}")) {
            return Some(t.clone());
        }
        let (r, id) = (redis?, id_of(key)?);
        let sealed = r.get(&id).await.ok()??;
        let plain = codec.open(&[AAD, &id].concat(), &sealed).ok()?;
        String::from_utf8(plain).ok()
    }

    /// Forgets the target under `key` once its login completed.
    pub async fn remove(&self, key: &str, redis: Option<&RedisStore>) {
        {
            let mut t = self.table.lock();
            let k = format!("t:{key}");
            if let Some(v) = t.entries.remove(&k) {
                t.bytes -= v.len() + k.len();
            }
        }
        if let (Some(r), Some(id)) = (redis, id_of(key)) {
            // Best effort: the entry expires with its flow anyway.
            let _ = r.delete(&id).await;
        }
    }

    /// Remembers where a flow that ended (`state`) was going: `target`
    /// inline, or the key of a stored one and its path. A completed flow
    /// lets a reload of its spent callback start over toward the same place;
    /// an evicted one (see `MAX_PENDING_FLOWS`) lets its late callback do so.
    pub fn remember(&self, ended: Ended, state: &str, target: &str, stored: Option<&str>) {
        let value = match stored {
            Some(key) => format!("@{key} {target}"),
            None => format!("={target}"),
        };
        self.table
            .lock()
            .insert(format!("{}:{state}", ended.tag()), value, Instant::now());
    }

    /// Where the flow `state` that ended as `ended` was going, while
    /// remembered (a stored target fetched back, else its path).
    pub async fn ended_target(
        &self,
        ended: Ended,
        state: &str,
        codec: &SessionCodec,
        redis: Option<&RedisStore>,
    ) -> Option<String> {
        let value = self
            .table
            .lock()
            .entries
            .get(&format!("{}:{state}", ended.tag()))
            .cloned()?;
        if let Some(target) = value.strip_prefix('=') {
            return Some(target.to_owned());
        }
        let (key, path) = value.strip_prefix('@')?.split_once(' ')?;
        Some(match self.get(key, codec, redis).await {
            Some(t) => t,
            None => path.to_owned(),
        })
    }
}

/// How a flow ended before its callback came (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Its callback completed (a session was created).
    Completed,
    /// A newer flow in the same browser pushed its cookie out.
    Evicted,
}

impl Ended {
    fn tag(self) -> &'static str {
        match self {
            Ended::Completed => "s",
            Ended::Evicted => "e",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> SessionCodec {
        SessionCodec::new(&[7u8; 32])
    }

    #[tokio::test]
    async fn a_kept_target_comes_back_until_removed() {
        let p = PendingTargets::default();
        let long = format!("/a?v={}", "x".repeat(9000));
        let key = p.put(&long, &codec(), None).await;
        assert_eq!(key.len(), 22);
        assert_eq!(p.get(&key, &codec(), None).await.as_deref(), Some(&*long));
        p.remove(&key, None).await;
        assert_eq!(p.get(&key, &codec(), None).await, None);
        assert_eq!(p.table.lock().bytes, 0);
    }

    #[test]
    fn memory_is_bounded_oldest_first() {
        let mut t = Table::default();
        let now = Instant::now();
        let big = "x".repeat(1024 * 1024);
        for i in 0..40 {
            t.insert(format!("t:{i}"), big.clone(), now);
        }
        assert!(t.bytes <= MEMORY_BUDGET, "{}", t.bytes);
        assert!(!t.entries.contains_key("t:0"), "the oldest went first");
        assert!(t.entries.contains_key("t:39"));
        assert_eq!(t.entries.len(), t.order.len());
    }

    #[test]
    fn entries_expire_with_their_flow() {
        let mut t = Table::default();
        let now = Instant::now();
        t.insert("s:a".into(), "/x".into(), now);
        t.insert("s:b".into(), "/y".into(), now + FLOW_TTL);
        assert!(!t.entries.contains_key("s:a"));
        assert!(t.entries.contains_key("s:b"));
    }
}
