//! Where sessions live. With `store: cookie` the sealed session is the cookie;
//! with `store: redis` the cookie is a sealed ticket (id + per-session key)
//! and the session sits in Redis, encrypted with the ticket's key.

use std::sync::Arc;

use http::HeaderValue;

use super::chunks;
use super::codec::SessionCodec;
use super::cookies::{CookieAttrs, CookieJar};
use super::redis::{refresh_keys, RedisError, RedisStore};
use super::{Session, TokenUse};
use crate::clock::unix_now;
use crate::config;
use crate::domain::LogoutTarget;
use crate::metrics::{Metrics, SessionEvent};
use crate::oidc::OidcError;

/// How long one replica may hold a refresh lock: longer than the IdP
/// request's own timeout, so a lock never lapses while its grant runs.
pub const REFRESH_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(15);
/// How long a refresh result stays for replicas still holding the old
/// refresh token (as the in-process reuse window).
pub const REFRESH_RESULT_TTL: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a replica waiting for another's refresh looks for its result.
const REFRESH_POLL: std::time::Duration = std::time::Duration::from_millis(25);

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
    /// Opened cookie sessions by sealed value; `clear()` it when the key
    /// ring changes.
    pub open_cache: super::open_cache::OpenCache,
    cookie: config::Cookie,
    codec: Arc<SessionCodec>,
    /// Shared with the stores that replace this one on reload.
    redis: Option<Arc<RedisStore>>,
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
            config::Session::Redis(r) => Some(Arc::new(RedisStore::new(r, metrics.clone())?)),
        };
        Ok(SessionStore {
            open_cache: super::open_cache::OpenCache::new(),
            cookie: cfg.cookie.clone(),
            codec,
            redis,
            metrics,
        })
    }

    /// This store with `cfg`'s cookie settings and `codec` (a config
    /// reload): the Redis client and its connection are kept, so no session
    /// is lost (`session` itself needs a restart to change).
    pub fn reconfigured(&self, cfg: &config::Config, codec: Arc<SessionCodec>) -> Self {
        SessionStore {
            open_cache: super::open_cache::OpenCache::new(),
            cookie: cfg.cookie.clone(),
            codec,
            redis: self.redis.clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// The Redis backend, when `session: redis` (readiness checks use it).
    pub fn redis(&self) -> Option<&RedisStore> {
        self.redis.as_deref()
    }

    /// The session the request carries, with every token. A missing,
    /// tampered, foreign, expired or undecodable cookie is `Ok(None)`:
    /// "no credentials".
    pub async fn load(
        &self,
        jar: &CookieJar<'_>,
    ) -> Result<Option<(Session, Option<Ticket>)>, StoreError> {
        self.load_with(jar, unix_now(), None, |json| {
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
        // Cookie sessions: the exact sealed value seen before is served from
        // the open cache (see its module doc); Redis sessions never are.
        let raw = match self.redis {
            None => chunks::read_session_cookie(&self.cookie.name, jar),
            Some(_) => None,
        };
        if let Some(hit) = raw.as_deref().and_then(|r| self.open_cache.get(r, now)) {
            return Ok(Some((Session::clone(&hit), None)));
        }
        let found = self
            .load_with(jar, now, Some(uses), |json| {
                Session::decode_for(json, uses, now).ok()
            })
            .await?;
        if let (Some(raw), Some((s, _))) = (raw.as_deref(), &found) {
            self.open_cache.insert(
                raw,
                std::sync::Arc::new(s.clone()),
                cache_until(s, uses),
                now,
            );
        }
        Ok(found)
    }

    /// `cached`: the per-request path's token needs, when a Redis session
    /// may come from the open cache (see [`SessionStore::fetch`]).
    async fn load_with(
        &self,
        jar: &CookieJar<'_>,
        now: u64,
        cached: Option<TokenUse>,
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
                match self
                    .fetch(&ticket, cached.map(|u| (u, now)), decode)
                    .await?
                {
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

    /// The Redis ticket the request's session cookie carries, if it opens.
    fn ticket_of(&self, jar: &CookieJar<'_>) -> Option<Ticket> {
        let raw = chunks::read_session_cookie(&self.cookie.name, jar)?;
        let plain = self.codec.open(self.cookie.name.as_bytes(), &raw).ok()?;
        Ticket::decode(&plain)
    }

    /// The session a Redis ticket points at, read again (after a refresh
    /// race with another replica, say). None when gone or undecodable.
    pub async fn reload(&self, ticket: &Ticket) -> Result<Option<Session>, StoreError> {
        self.fetch(ticket, None, |json| {
            serde_json::from_slice::<Session>(json).ok()
        })
        .await
    }

    /// The session `ticket` points at in Redis, read on every call, so a
    /// deletion or back-channel logout takes effect on the very next one.
    ///
    /// With `cached` (the per-request path: its token needs and the time), a
    /// value byte-for-byte the one opened before under the same id is served
    /// from the open cache instead of being opened again (AES-GCM with the
    /// ticket's key, then JSON). The cache key holds the id as well as the
    /// value, so a value copied to another id still has to open with that
    /// id's key.
    async fn fetch(
        &self,
        ticket: &Ticket,
        cached: Option<(TokenUse, u64)>,
        decode: impl FnOnce(&[u8]) -> Option<Session>,
    ) -> Result<Option<Session>, StoreError> {
        let Some(redis) = &self.redis else {
            return Ok(None);
        };
        let Some(sealed) = redis.get(&ticket.id).await? else {
            return Ok(None);
        };
        // The id, then the value (its tail, the GCM tag, indexes the table).
        let cache = cached.map(|(uses, now)| {
            (
                [hex::encode(ticket.id).as_str(), ".", &sealed].concat(),
                uses,
                now,
            )
        });
        if let Some((key, _, now)) = &cache {
            if let Some(hit) = self.open_cache.get(key.as_bytes(), *now) {
                return Ok(Some(Session::clone(&hit)));
            }
        }
        let session = SessionCodec::new(&ticket.key)
            .open(&ticket.id, &sealed)
            .ok()
            .and_then(|plain| decode(&plain));
        match (&session, cache) {
            (None, _) => self.metrics.session(SessionEvent::Invalid),
            (Some(s), Some((key, uses, now))) => {
                self.open_cache.insert(
                    key.as_bytes(),
                    std::sync::Arc::new(s.clone()),
                    cache_until(s, uses),
                    now,
                );
            }
            (Some(_), None) => {}
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

    /// `Set-Cookie` lines re-sealing the request's session cookie with the
    /// current `cookie.secret` when only a previous secret opens it (secret
    /// rotation); none otherwise. The sealed content (the session, or the
    /// Redis ticket) is carried over byte for byte; `expires_at` (Unix
    /// seconds) sets the cookie's lifetime.
    pub fn reseal_if_stale(
        &self,
        expires_at: u64,
        host: &str,
        jar: &CookieJar<'_>,
    ) -> Vec<HeaderValue> {
        let name = self.cookie.name.as_bytes();
        let Some(raw) = chunks::read_session_cookie(&self.cookie.name, jar) else {
            return Vec::new();
        };
        if self.codec.is_current(name, &raw) {
            return Vec::new();
        }
        let Ok(plain) = self.codec.open(name, &raw) else {
            return Vec::new();
        };
        let value = self.codec.seal(name, &plain);
        let attrs = self.attrs(host, expires_at);
        to_header_values(chunks::set_session_cookies(
            &self.cookie.name,
            &value,
            &attrs,
            jar,
        ))
    }

    /// Ends a session: its Redis entry (if any) and every cookie chunk.
    pub async fn clear(
        &self,
        ticket: Option<&Ticket>,
        host: &str,
        jar: &CookieJar<'_>,
    ) -> Result<Vec<HeaderValue>, StoreError> {
        if let Some(redis) = &self.redis {
            // Without a ticket from the caller (its read of the session
            // failed), the cookie's own ticket is deleted: a sign-out must
            // never leave the stored session behind to answer again.
            let own = match ticket {
                Some(_) => None,
                None => self.ticket_of(jar),
            };
            if let Some(t) = ticket.or(own.as_ref()) {
                redis.delete(&t.id).await?;
            }
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

    /// Runs `redeem` (the `refresh_token` grant for `old`'s refresh token)
    /// once across every replica sharing this store, and returns its
    /// refreshed session.
    ///
    /// With Redis: a short lock (`SET NX PX`, [`REFRESH_LOCK_TTL`]) keyed by
    /// a digest of the refresh token; the winner redeems and stores the
    /// result, sealed with a key derived from the refresh token (so only
    /// holders of the old session can open it), for [`REFRESH_RESULT_TTL`];
    /// the others wait for that result and reuse it, making no grant; each
    /// replica reads the result after its lock attempt, so one that takes
    /// the lock just after the winner released it still finds it. A
    /// result no newer than `old` is not reused (an IdP that does not rotate
    /// refresh tokens must still see each due refresh).
    ///
    /// With cookies, where replicas cannot coordinate: `invalid_grant` while
    /// `old`'s ID token is still unexpired is taken as a lost race (another
    /// replica spent the rotated refresh token and sent the browser the new
    /// session) and reported as a transient failure, so the caller keeps the
    /// still-valid session instead of signing the user out.
    ///
    /// # Errors
    /// The grant's own [`OidcError`]; [`OidcError::Unreachable`] when Redis
    /// is unavailable or the winner's result did not come within the lock's
    /// lifetime (the caller keeps the current session and retries later).
    pub async fn refresh_single_flight<F>(
        &self,
        old: &Session,
        redeem: F,
    ) -> Result<Session, OidcError>
    where
        F: std::future::Future<Output = Result<Session, OidcError>>,
    {
        let (Some(redis), Some(rt)) = (&self.redis, old.refresh_token.as_ref()) else {
            return match redeem.await {
                Err(OidcError::InvalidGrant) if id_token_unexpired(old, unix_now()) => {
                    Err(OidcError::Rejected(
                        "refresh token already redeemed (another replica?); keeping the session"
                            .into(),
                    ))
                }
                r => r,
            };
        };
        let postponed = |e: RedisError| {
            OidcError::Unreachable(format!("refresh postponed: session store: {e}"))
        };
        let (lock, result) = refresh_keys(rt.expose());
        let seal_key = refresh_seal_key(rt.expose());
        let codec = SessionCodec::new(&seal_key);
        let owner = crate::domain::random::token(16);
        let deadline = tokio::time::Instant::now() + REFRESH_LOCK_TTL;
        let shared_result = || async {
            let sealed = redis.get_key(&result).await.map_err(postponed)?;
            Ok::<_, OidcError>(sealed.and_then(|sealed| {
                codec
                    .open(result.as_bytes(), &sealed)
                    .ok()
                    .and_then(|json| serde_json::from_slice::<Session>(&json).ok())
                    .filter(|s| s.refreshed_at > old.refreshed_at)
            }))
        };
        loop {
            let locked = redis
                .try_lock(&lock, &owner, REFRESH_LOCK_TTL)
                .await
                .map_err(postponed)?;
            // The result is read after the lock attempt, never only before:
            // a winner publishes its result before it unlocks, so whoever
            // takes the lock after that unlock sees the result. A look
            // before the lock could miss a result published in between and
            // redeem the spent refresh token a second time.
            if let Some(done) = shared_result().await? {
                if locked {
                    let _ = redis.unlock(&lock, &owner).await;
                }
                return Ok(done);
            }
            if locked {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(OidcError::Unreachable(
                    "refresh postponed: another replica's refresh did not finish".into(),
                ));
            }
            tokio::time::sleep(REFRESH_POLL).await;
        }
        // This replica holds the lock and no result is out: it redeems.
        let outcome = redeem.await;
        if let Ok(fresh) = &outcome {
            // The grant is spent either way: a lost result only makes
            // waiting replicas time out and keep their session.
            if let Err(e) = share_result(redis, &result, &codec, fresh).await {
                tracing::warn!(error = %e, "could not share the refresh result");
            }
        }
        let _ = redis.unlock(&lock, &owner).await;
        outcome
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

/// The key a refresh result is sealed with: derived from the refresh token
/// (which only the old session holds), under a label of its own so it is
/// unrelated to the digest naming the Redis keys.
fn refresh_seal_key(refresh_token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(
        [
            b"authgate refresh result seal\0".as_slice(),
            refresh_token.as_bytes(),
        ]
        .concat(),
    )
    .into()
}

/// Leaves `fresh` for the replicas still holding the old session: sealed
/// with `codec` (the old refresh token's [`refresh_seal_key`]) under its
/// `result` key (see [`refresh_keys`]), for [`REFRESH_RESULT_TTL`].
async fn share_result(
    redis: &RedisStore,
    result: &str,
    codec: &SessionCodec,
    fresh: &Session,
) -> Result<(), RedisError> {
    let json = serde_json::to_vec(fresh).unwrap_or_default();
    redis
        .put_key(
            result,
            &codec.seal(result.as_bytes(), &json),
            REFRESH_RESULT_TTL,
        )
        .await
}

/// Whether the session's ID token (verified at login or the last refresh)
/// has an `exp` after `now`. The payload is read without verification: it
/// comes from inside our own sealed session.
fn id_token_unexpired(session: &Session, now: u64) -> bool {
    use base64::Engine as _;
    let Some(token) = &session.id_token else {
        return false;
    };
    let exp = token
        .expose()
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_u64));
    exp.is_some_and(|exp| exp > now)
}

/// `Set-Cookie` strings as header values; a line that is not a valid header
/// value (impossible for what this module renders) is dropped.
pub fn to_header_values(lines: Vec<String>) -> Vec<HeaderValue> {
    lines
        .into_iter()
        .filter_map(|l| HeaderValue::from_str(&l).ok())
        .collect()
}

/// How long an opened session may be served from the open cache: until a
/// refresh falls due (then every token is needed), at most its expiry.
fn cache_until(s: &Session, uses: TokenUse) -> u64 {
    uses.refresh
        .map_or(s.expires_at, |d| s.refreshed_at.saturating_add(d.as_secs()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::redis::tests::{connected_store, local_redis};
    use super::*;
    use crate::domain::{Identity, Secret};

    /// A Redis-backed store on `redis`, as every replica of a fleet has.
    fn store_on(redis: Arc<RedisStore>) -> SessionStore {
        let yaml = "provider: { issuer_url: 'https://idp.example.com', client_id: a }\n\
                    cookie: { secret: 0123456789abcdef }\n\
                    upstreams: [ { path: /, url: 'http://127.0.0.1:8080' } ]\n";
        let cfg = config::load_str_with_env(yaml, &|_| None).unwrap();
        SessionStore {
            open_cache: super::super::open_cache::OpenCache::new(),
            cookie: cfg.cookie.clone(),
            codec: Arc::new(SessionCodec::new(b"0123456789abcdef")),
            redis: Some(redis),
            metrics: Metrics::new().unwrap(),
        }
    }

    fn session(refresh_token: &str, refreshed_at: u64) -> Session {
        Session {
            identity: Identity {
                user: "alice".into(),
                ..Identity::default()
            }
            .into(),
            sub: "alice".into(),
            sid: None,
            id_token: None,
            access_token: None,
            refresh_token: Some(Secret::new(refresh_token.into())),
            refreshed_at,
            expires_at: u64::MAX,
            claims: None,
        }
    }

    /// What the winning replica leaves for the others: `fresh`, sealed
    /// under `old_token`'s result key.
    async fn publish(redis: &RedisStore, old_token: &str, fresh: &Session) {
        let (_, result) = refresh_keys(old_token);
        let codec = SessionCodec::new(&refresh_seal_key(old_token));
        share_result(redis, &result, &codec, fresh).await.unwrap();
    }

    /// Whether nobody holds `token`'s refresh lock (taken, then released).
    async fn lock_free(redis: &RedisStore, token: &str) -> bool {
        let (lock, _) = refresh_keys(token);
        let free = redis
            .try_lock(&lock, "probe", Duration::from_secs(5))
            .await
            .unwrap();
        redis.unlock(&lock, "probe").await.unwrap();
        free
    }

    /// The race that once made two grants: another replica publishes its
    /// result and unlocks just before this one takes the lock. The lock
    /// free and a fresh result present is exactly the state this replica
    /// then finds: it must reuse the result, not redeem the token again.
    #[tokio::test]
    async fn a_replica_taking_the_lock_after_another_finished_reuses_its_result() {
        let Some(server) = local_redis() else { return };
        let redis = connected_store(server.port).await;
        let store = store_on(redis.clone());
        let old = session("rt-1", 100);
        publish(&redis, "rt-1", &session("rt-2", 200)).await;

        let redeemed = AtomicUsize::new(0);
        let got = store
            .refresh_single_flight(&old, async {
                redeemed.fetch_add(1, Ordering::SeqCst);
                Ok(session("rt-3", 300))
            })
            .await
            .unwrap();
        assert_eq!(got, session("rt-2", 200));
        assert_eq!(redeemed.load(Ordering::SeqCst), 0, "no second grant");
        assert!(lock_free(&redis, "rt-1").await, "the lock was released");
    }

    /// The first replica redeems once and leaves its result; a second one
    /// still holding the old session reuses it; a result no newer than the
    /// session (an IdP that does not rotate refresh tokens) is not reused.
    #[tokio::test]
    async fn one_grant_per_refresh_token_and_only_newer_results_reused() {
        let Some(server) = local_redis() else { return };
        let redis = connected_store(server.port).await;
        let (first, second) = (store_on(redis.clone()), store_on(redis.clone()));
        let old = session("rt-1", 100);
        let redeemed = AtomicUsize::new(0);
        let redeem = |at| {
            let redeemed = &redeemed;
            async move {
                redeemed.fetch_add(1, Ordering::SeqCst);
                Ok(session("rt-1", at))
            }
        };

        let won = first
            .refresh_single_flight(&old, redeem(200))
            .await
            .unwrap();
        let reused = second
            .refresh_single_flight(&old, redeem(250))
            .await
            .unwrap();
        assert_eq!((won.refreshed_at, reused.refreshed_at), (200, 200));
        assert_eq!(redeemed.load(Ordering::SeqCst), 1);
        assert!(lock_free(&redis, "rt-1").await);

        // The refreshed session falls due again under the same token.
        let again = second
            .refresh_single_flight(&won, redeem(400))
            .await
            .unwrap();
        assert_eq!(again.refreshed_at, 400);
        assert_eq!(redeemed.load(Ordering::SeqCst), 2);
    }
}
