//! A bounded cache of opened sessions, keyed by the exact sealed value (the
//! cookie, or the value read from Redis), so a repeat request skips base64,
//! AES-GCM and JSON.
//!
//! Rules that keep it as safe as opening every time:
//! - a hit needs the whole sealed value to be byte-for-byte the one opened
//!   (the table is indexed by its last bytes, the GCM tag's base64, which an
//!   unauthenticated value cannot make collide with more than its own slot);
//! - an entry never outlives its session's `expires_at`, nor the moment a
//!   refresh falls due (the caller then opens the cookie again and gets every
//!   token back), see [`OpenCache::insert`];
//! - only values opened with the *current* key are inserted (a value opened
//!   with a previous `cookie.secret` must be re-sealed, which the slow path
//!   does); [`OpenCache::clear`] empties it when the key ring changes;
//! - a Redis session is still read from Redis on every request, so a
//!   deletion or back-channel logout takes effect on the very next one; the
//!   cache only spares opening a value byte-for-byte the one opened before
//!   under the same ticket id (the key is the id, then the value).
//!
//! Memory bound: at most [`MAX_ENTRIES`] entries and [`MAX_BYTES`] of sealed
//! values (a session's decoded form is smaller than its sealed value), so
//! about 2 × 8 MiB at most; past either bound, expired entries go first,
//! then arbitrary ones.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Session;

/// At most this many opened sessions are kept.
pub const MAX_ENTRIES: usize = 4096;
/// At most this many bytes of sealed cookie values are kept (8 MiB).
pub const MAX_BYTES: usize = 8 << 20;

/// How many trailing bytes of the sealed value index the table: the base64
/// of the 16-byte GCM tag (22 characters) and a little of the ciphertext.
const INDEX_LEN: usize = 32;

type Index = [u8; INDEX_LEN];

struct Entry {
    sealed: Box<[u8]>,
    session: Arc<Session>,
    /// Unix seconds from which the entry is no longer served.
    until: u64,
}

#[derive(Default)]
struct Table {
    map: HashMap<Index, Entry>,
    bytes: usize,
}

/// The opened-session cache (see the module doc). One per session store.
#[derive(Default)]
pub struct OpenCache {
    table: Mutex<Table>,
}

impl std::fmt::Debug for OpenCache {
    // Keys are sealed sessions: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenCache({} entries)", self.len())
    }
}

fn index(sealed: &[u8]) -> Index {
    let mut out = [0u8; INDEX_LEN];
    let tail = &sealed[sealed.len().saturating_sub(INDEX_LEN)..];
    out[..tail.len()].copy_from_slice(tail);
    out
}

impl OpenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The session `sealed` opened to, if cached and still valid at `now`
    /// (Unix seconds).
    pub fn get(&self, sealed: impl AsRef<[u8]>, now: u64) -> Option<Arc<Session>> {
        let sealed = sealed.as_ref();
        let table = self.table.lock();
        let e = table.map.get(&index(sealed))?;
        (now < e.until && *e.sealed == *sealed).then(|| e.session.clone())
    }

    /// Remembers that `sealed` (opened with the current key) holds `session`
    /// until `until` (Unix seconds): the caller passes the earlier of the
    /// session's `expires_at` and the moment its refresh falls due. Values
    /// larger than the byte bound are not kept.
    pub fn insert(&self, sealed: impl AsRef<[u8]>, session: Arc<Session>, until: u64, now: u64) {
        let sealed = sealed.as_ref();
        let until = until.min(session.expires_at);
        if until <= now || sealed.len() > MAX_BYTES / 16 {
            return;
        }
        let mut table = self.table.lock();
        let t = &mut *table;
        if t.map.len() >= MAX_ENTRIES || t.bytes + sealed.len() > MAX_BYTES {
            t.map.retain(|_, e| e.until > now);
            t.bytes = t.map.values().map(|e| e.sealed.len()).sum();
            // Still full: an arbitrary victim is fine for a cache.
            while t.map.len() >= MAX_ENTRIES || t.bytes + sealed.len() > MAX_BYTES {
                let Some(k) = t.map.keys().next().copied() else {
                    break;
                };
                if let Some(e) = t.map.remove(&k) {
                    t.bytes -= e.sealed.len();
                }
            }
        }
        let entry = Entry {
            sealed: sealed.into(),
            session,
            until,
        };
        t.bytes += sealed.len();
        if let Some(old) = t.map.insert(index(sealed), entry) {
            t.bytes -= old.sealed.len();
        }
    }

    /// Forgets every entry: call when the key ring changes (reload, secret
    /// rotation), so nothing opened under the old ring is served.
    pub fn clear(&self) {
        let mut t = self.table.lock();
        t.map.clear();
        t.bytes = 0;
    }

    /// How many sessions are cached.
    pub fn len(&self) -> usize {
        self.table.lock().map.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Identity;

    fn session(expires_at: u64) -> Arc<Session> {
        Arc::new(Session {
            identity: Identity {
                user: "alice".into(),
                email: String::new(),
                preferred_username: String::new(),
                groups: vec![],
            }
            .into(),
            sub: "alice".into(),
            sid: None,
            id_token: None,
            access_token: None,
            refresh_token: None,
            refreshed_at: 0,
            expires_at,
            claims: None,
        })
    }

    #[test]
    fn hits_only_the_exact_value_until_its_deadline() {
        let c = OpenCache::new();
        let sealed = "A".repeat(100) + "tail-of-the-gcm-tag-0123456789";
        c.insert(&sealed, session(200), 150, 100);
        assert!(c.get(&sealed, 149).is_some());
        assert!(c.get(&sealed, 150).is_none(), "refresh due: not served");
        // Same index (last 32 bytes), other bytes before it: a miss.
        let other = "B".repeat(100) + "tail-of-the-gcm-tag-0123456789";
        assert!(c.get(&other, 120).is_none());
        assert!(c.get(&sealed[1..], 120).is_none());
    }

    #[test]
    fn never_outlives_the_session() {
        let c = OpenCache::new();
        c.insert("sealed-value", session(110), 500, 100);
        assert!(c.get("sealed-value", 109).is_some());
        assert!(c.get("sealed-value", 110).is_none());
        c.insert("expired", session(100), 500, 100);
        assert!(c.is_empty() || c.get("expired", 100).is_none());
    }

    #[test]
    fn is_bounded_and_clears() {
        let c = OpenCache::new();
        for i in 0..MAX_ENTRIES + 50 {
            c.insert(format!("value-{i:08}"), session(1000), 1000, 1);
        }
        assert!(c.len() <= MAX_ENTRIES);
        let big = "x".repeat(MAX_BYTES / 16 - 32);
        for i in 0..40 {
            c.insert(format!("{big}{i:032}"), session(1000), 1000, 1);
        }
        {
            let t = c.table.lock();
            assert!(t.bytes <= MAX_BYTES);
            let counted: usize = t.map.values().map(|e| e.sealed.len()).sum();
            assert_eq!(t.bytes, counted);
            assert!(t.map.len() >= 15, "big values kept: {}", t.map.len());
        }
        c.clear();
        assert!(c.is_empty());
    }
}
