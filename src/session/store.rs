//! Where sessions live. With `store: cookie` the sealed session is the cookie;
//! with `store: redis` the cookie is a sealed ticket (id + per-session key)
//! and the session sits in Redis, encrypted with the ticket's key.

use std::sync::Arc;

use http::HeaderValue;

use super::chunks;
use super::codec::SessionCodec;
use super::cookies::{CookieAttrs, CookieJar};
use super::redis::{RedisError, RedisStore};
use super::{Session, TokenUse};
use crate::clock::unix_now;
use crate::config;
use crate::domain::LogoutTarget;
use crate::metrics::{Metrics, SessionEvent};

/// Why the session store could not answer. A bad or missing cookie is not an
/// error (it is "no session"); only an unreachable backend is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis did not answer: the caller serves 503 rather than treating the
    /// user as signed out.
    #[error("session store unavailable: {0}")]
    Unavailable(#[from] RedisError),
}

/// Identifies a Redis-held session; absent for cookie sessions. Its `Debug`
/// is redacted: the key opens the stored session.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Random id: the Redis key the session is stored under (hex-encoded).
    pub id: [u8; 16],
    /// Random AES-256 key the stored session is sealed with; never leaves
    /// the browser's cookie, so a Redis dump alone opens nothing.
    pub key: [u8; 32],
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket([redacted])")
    }
}

impl Ticket {
    fn random() -> Self {
        Ticket {
            id: crate::domain::random::bytes(),
            key: crate::domain::random::bytes(),
        }
    }

    fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..16].copy_from_slice(&self.id);
        out[16..].copy_from_slice(&self.key);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 48 {
            return None;
        }
        let mut t = Ticket {
            id: [0; 16],
            key: [0; 32],
        };
        t.id.copy_from_slice(&bytes[..16]);
        t.key.copy_from_slice(&bytes[16..]);
        Some(t)
    }
}

/// Loads, saves, clears and revokes sessions for the configured store
/// (`session: cookie` or `session: redis`); built once at start-up.
pub struct SessionStore {
    cookie: config::Cookie,
    codec: Arc<SessionCodec>,
    redis: Option<RedisStore>,
    metrics: Metrics,
}

impl SessionStore {
    /// A store for `cfg.session`, sealing with `codec`.
    ///
    /// # Errors
    /// The Redis client could not be built from the configured topology.
    pub fn new(
        cfg: &config::Config,
        codec: Arc<SessionCodec>,
        metrics: Metrics,
    ) -> Result<Self, RedisError> {
        let redis = match &cfg.session {
            config::Session::Cookie => None,
            config::Session::Redis(r) => Some(RedisStore::new(r, metrics.clone())?),
        };
        Ok(SessionStore {
            cookie: cfg.cookie.clone(),
            codec,
            redis,
            metrics,
        })
    }

    /// The Redis backend, when `session: redis` (readiness checks use it).
    pub fn redis(&self) -> Option<&RedisStore> {
        self.redis.as_ref()
    }

    /// The session the request carries, with every token. A missing,
    /// tampered, foreign, expired or undecodable cookie is `Ok(None)`:
    /// "no credentials".
    pub async fn load(
        &self,
        jar: &CookieJar<'_>,
    ) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
        self.load_with(jar, unix_now(), |json| {
            serde_json::from_slice::<Session>(json).ok()
        })
        .await
    }

    /// [`SessionStore::load`] for the per-request path: only the tokens
    /// `uses` needs at `now` are copied out (see [`Session::decode_for`]).
    pub async fn load_for(
        &self,
        jar: &CookieJar<'_>,
        uses: TokenUse,
        now: u64,
    ) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
        self.load_with(jar, now, |json| Session::decode_for(json, uses, now).ok())
            .await
    }

    async fn load_with(
        &self,
        jar: &CookieJar<'_>,
        now: u64,
        decode: impl FnOnce(&[u8]) -> Option<Session>,
    ) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
        let Some(raw) = chunks::read_session_cookie(&self.cookie.name, jar) else {
            return Ok(None);
        };
        let Ok(plain) = self.codec.open(self.cookie.name.as_bytes(), &raw) else {
            self.metrics.session(SessionEvent::Invalid);
            return Ok(None);
        };
        let (session, ticket) = match &self.redis {
            None => match decode(&plain) {
                Some(s) => (s, None),
                None => {
                    self.metrics.session(SessionEvent::Invalid);
                    return Ok(None);
                }
            },
            Some(_) => {
                let Some(ticket) = Ticket::decode(&plain) else {
                    self.metrics.session(SessionEvent::Invalid);
                    return Ok(None);
                };
                match self.fetch(&ticket, decode).await? {
                    Some(s) => (s, Some(ticket)),
                    None => return Ok(None),
                }
            }
        };
        if session.is_expired(now) {
            return Ok(None);
        }
        Ok(Some((session, ticket)))
    }

    /// The session a Redis ticket points at, read again (after a refresh
    /// race with another replica, say). None when gone or undecodable.
    pub async fn reload(&self, ticket: &Ticket) -> Result<Option<Session>, StoreError> {
        self.fetch(ticket, |json| serde_json::from_slice::<Session>(json).ok())
            .await
    }

    async fn fetch(
        &self,
        ticket: &Ticket,
        decode: impl FnOnce(&[u8]) -> Option<Session>,
    ) -> Result<Option<Session>, StoreError> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        let Some(sealed) = redis.get(&ticket.id).await? else {
            return Ok(None);
        };
        let session = SessionCodec::new(&ticket.key)
            .open(&ticket.id, &sealed)
            .ok()
            .and_then(|plain| decode(&plain));
        if session.is_none() {
            self.metrics.session(SessionEvent::Invalid);
        }
        Ok(session)
    }

    /// Stores a session and returns the `Set-Cookie` lines to send. With
    /// Redis, an existing ticket is updated in place (no new cookie).
    pub async fn save(
        &self,
        session: &Session,
        ticket: Option<&Ticket>,
        host: &str,
        jar: &CookieJar<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        let attrs = self.attrs(host, session.expires_at);
        let value = match &self.redis {
            None => {
                let json = serde_json::to_vec(session).unwrap_or_default();
                self.codec.seal(self.cookie.name.as_bytes(), &json)
            }
            Some(redis) => {
                let ttl = session.expires_at.saturating_sub(unix_now()).max(1);
                let json = serde_json::to_vec(session).unwrap_or_default();
                let (t, fresh) = match ticket {
                    Some(t) => (t.clone(), false),
                    None => (Ticket::random(), true),
                };
                let sealed = SessionCodec::new(&t.key).seal(&t.id, &json);
                redis
                    .put(&t.id, &sealed, ttl, session.sid.as_deref(), &session.sub)
                    .await?;
                if !fresh {
                    return Ok(Vec::new());
                }
                self.codec.seal(self.cookie.name.as_bytes(), &t.encode())
            }
        };
        Ok(to_header_values(chunks::set_session_cookies(
            &self.cookie.name,
            &value,
            &attrs,
            jar,
        )))
    }

    /// Ends a session: its Redis entry (if any) and every cookie chunk.
    pub async fn clear(
        &self,
        ticket: Option<&Ticket>,
        host: &str,
        jar: &CookieJar<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        if let (Some(redis), Some(t)) = (&self.redis, ticket) {
            redis.delete(&t.id).await?;
        }
        self.metrics.session(SessionEvent::Cleared);
        let attrs = self.attrs(host, 0);
        Ok(to_header_values(chunks::clear_session_cookies(
            &self.cookie.name,
            &attrs,
            jar,
        )))
    }

    /// Back-channel logout: drops every Redis session of a `sid` or `sub`.
    pub async fn revoke(&self, target: &LogoutTarget) -> Result<usize, StoreError> {
        match &self.redis {
            Some(redis) => Ok(redis
                .revoke(target.sid.as_deref(), target.sub.as_deref())
                .await?),
            None => Ok(0),
        }
    }

    /// Cookie attributes for this host; `expires_at` 0 means "clearing".
    pub fn attrs(&self, host: &str, expires_at: u64) -> CookieAttrs {
        let mut attrs = CookieAttrs::for_request(&self.cookie, host);
        if expires_at > 0 {
            let left = expires_at.saturating_sub(unix_now());
            attrs.max_age = Some(std::time::Duration::from_secs(left));
        }
        attrs
    }
}

/// `Set-Cookie` strings as header values; a line that is not a valid header
/// value (impossible for what this module renders) is dropped.
pub fn to_header_values(lines: Vec<String>) -> Vec<HeaderValue> {
    lines
        .into_iter()
        .filter_map(|l| HeaderValue::from_str(&l).ok())
        .collect()
}
