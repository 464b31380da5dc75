//! The JWKS cache: keys by `kid`, refetched when a token names a `kid` we do
//! not know (key rotation at the IdP). A refetch is single-flight: every
//! caller that needs one while it runs awaits that one fetch (no lock is held
//! across it). Who may start one depends on where the token came from
//! ([`Refetch`]): an ID token authgate itself just received from the token
//! endpoint refetches at once; a token a client presents may start one at
//! most once per [`REFETCH_MIN_INTERVAL`], so a flood of forged `kid`s cannot
//! turn into a flood of IdP calls.
//!
//! Each key is held twice: for `jsonwebtoken` (bearer and logout tokens) and
//! as `openidconnect`'s `CoreJsonWebKey` (ID tokens), parsed from the same
//! JWK, so both verifiers see the same keys and the same rotation.
//!
//! Each key set also remembers the bearer tokens it verified
//! ([`Jwks::verified`]): a refetched set (rotation, a key withdrawn, the
//! periodic refresh) starts with none.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreJsonWebKey;
use parking_lot::{Mutex, RwLock};
use url::Url;

use super::http::IdpHttp;
use super::verify::Bearer;
use super::OidcError;
use crate::metrics::IdpEndpoint;

/// A client-presented token's unknown `kid` starts a refetch at most this
/// often (counted from the last fetch of any kind).
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);

/// Where the token whose key is looked up came from, which decides whether
/// its unknown `kid` may start a refetch now. Either kind joins a refetch
/// already running: that costs the IdP nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// A token authgate fetched itself over the back channel (the ID token of
    /// a code or refresh grant, over its own TLS connection to the token
    /// endpoint): not attacker-chosen, so an unknown `kid` means the IdP
    /// rotated its key and the keys are refetched at once.
    Now,
    /// A token a client presented (`Authorization: Bearer`, a back-channel
    /// logout token POSTed to authgate): anyone can forge its `kid`, so it
    /// starts a refetch only if none ran for [`REFETCH_MIN_INTERVAL`].
    RateLimited,
}

/// A verification key and the one algorithm it may verify.
pub struct Key {
    /// The key for `jsonwebtoken` (bearer and logout tokens).
    pub decoding: DecodingKey,
    /// The one algorithm this key verifies (see [`signing_algorithm`]).
    pub alg: Algorithm,
    /// The same key for `openidconnect` (ID tokens); `None` when that crate
    /// cannot read it.
    pub jwk: Option<CoreJsonWebKey>,
}

/// At most this many verified bearer tokens are remembered per key set.
pub const MAX_VERIFIED: usize = 1024;
/// Longer bearer tokens are verified every time.
pub const MAX_VERIFIED_TOKEN_LEN: usize = 8 * 1024;
/// At most this many bytes of remembered tokens per key set, each counted as
/// twice its length plus 512 (its copy, its decoded claims, the entry): with
/// 8 KiB tokens, ~500 of them.
pub const MAX_VERIFIED_BYTES: usize = 8 * 1024 * 1024;
/// The cache is indexed by a keyed hash of the token's last bytes (its
/// signature, the part that differs between any two tokens): hashing them
/// costs a fraction of hashing the whole token, and the entry found is
/// compared with the whole presented token anyway.
const INDEXED_TAIL: usize = 48;

/// The bytes one remembered token is counted for: the token twice (its own
/// copy, and its decoded claims, whose JSON is 3/4 of the token's length,
/// with the map's overhead) plus the entry itself.
fn entry_bytes(token_len: usize) -> usize {
    2 * token_len + 512
}

/// Bearer tokens this key set verified, each with its `exp`.
#[derive(Default)]
struct Verified {
    /// By [`Verified::index`]; a token whose index another token holds is
    /// simply not found (and replaces it when verified).
    by_index: HashMap<u64, (Arc<Bearer>, u64)>,
    /// The sum of [`entry_bytes`] over `by_index`.
    bytes: usize,
    /// Random per key set, so no client can aim tokens at one index.
    hasher: RandomState,
}

impl Verified {
    fn index(&self, token: &str) -> u64 {
        let tail = token.len().saturating_sub(INDEXED_TAIL);
        self.hasher.hash_one(&token.as_bytes()[tail..])
    }

    /// Drops the tokens expired at `now`, then everything if the bounds
    /// still leave no room for one more entry of `bytes`.
    fn make_room(&mut self, bytes: usize, now: u64) {
        let full =
            |v: &Verified| v.by_index.len() >= MAX_VERIFIED || v.bytes + bytes > MAX_VERIFIED_BYTES;
        if !full(self) {
            return;
        }
        self.by_index.retain(|_, (_, exp)| *exp > now);
        self.bytes = self
            .by_index
            .values()
            .map(|(b, _)| entry_bytes(b.token.expose().len()))
            .sum();
        if full(self) {
            self.by_index.clear();
            self.bytes = 0;
        }
    }
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`, tried when a token has none.
    anonymous: Vec<Arc<Key>>,
    /// Verified bearer tokens: they live and die with this set, so a
    /// refetched key set (rotation, a key withdrawn, the periodic refresh)
    /// starts empty.
    verified: RwLock<Verified>,
}

/// One fetch of the key set, awaited by every caller that needs it.
type Fetch = Shared<BoxFuture<'static, Result<(), OidcError>>>;

/// The refetch bookkeeping, behind a lock that is never held across an await.
#[derive(Default)]
struct Fetching {
    /// When the last fetch (of any kind, or a seed) started.
    started: Option<Instant>,
    /// The running (or last) fetch.
    current: Option<Fetch>,
}

/// What a caller with an unknown `kid` does next.
enum Next {
    /// The key arrived meanwhile.
    Found,
    /// Await this fetch (started now or already running), then look again.
    Await(Fetch),
    /// A refetch ran too recently for a client-presented token.
    Refused,
}

/// One issuer's key cache. Lookups are lock-free; starting or joining a
/// refetch takes a short lock, awaiting it takes none.
pub struct Jwks {
    uri: Url,
    keys: Arc<ArcSwap<KeySet>>,
    loaded: Arc<AtomicBool>,
    fetching: Mutex<Fetching>,
}

// === impl Jwks ===

impl Jwks {
    /// An empty cache for the key set at `uri`; [`Jwks::load`] fills it.
    pub fn new(uri: Url) -> Self {
        Jwks {
            uri,
            keys: Arc::new(ArcSwap::from_pointee(KeySet::default())),
            loaded: Arc::new(AtomicBool::new(false)),
            fetching: Mutex::new(Fetching::default()),
        }
    }

    /// Whether a key set was ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Fetches the set now (or joins the fetch already running), replacing
    /// the cached one on success. Errors: the IdP unreachable, or an answer
    /// that is no key set.
    pub async fn load(&self, http: &IdpHttp) -> Result<(), OidcError> {
        match self.start_or_join(http, Refetch::Now, || false) {
            Next::Await(fetch) => fetch.await,
            Next::Found | Next::Refused => Ok(()),
        }
    }

    /// Replaces the cached set with `body` (a JWKS document) as if fetched
    /// now: discovery hands over the set it fetched.
    pub fn seed(&self, body: &serde_json::Value) -> Result<(), OidcError> {
        let set = parse_key_set(body)?;
        self.keys.store(Arc::new(set));
        self.loaded.store(true, Ordering::Release);
        self.fetching.lock().started = Some(Instant::now());
        Ok(())
    }

    /// The key for a token header. An unknown `kid` refetches the set as
    /// `refetch` allows (see [`Refetch`]) before giving up with
    /// [`OidcError::Token`]; a failed refetch is its own error.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        http: &IdpHttp,
        refetch: Refetch,
    ) -> Result<Arc<Key>, OidcError> {
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        let found = || self.lookup(kid, alg).is_some();
        if let Next::Await(fetch) = self.start_or_join(http, refetch, found) {
            fetch.await?;
        }
        self.lookup(kid, alg)
            .ok_or_else(|| OidcError::Token("unknown signing key".into()))
    }

    /// Joins the running fetch, else starts one if `refetch` allows it.
    /// `found` is asked first, under the lock: a fetch that finished since
    /// the caller's own lookup may already have brought its key in.
    fn start_or_join(&self, http: &IdpHttp, refetch: Refetch, found: impl Fn() -> bool) -> Next {
        let mut fetching = self.fetching.lock();
        if found() {
            return Next::Found;
        }
        if let Some(f) = fetching.current.as_ref().filter(|f| f.peek().is_none()) {
            return Next::Await(f.clone());
        }
        let recent = fetching
            .started
            .is_some_and(|t| t.elapsed() < REFETCH_MIN_INTERVAL);
        if refetch == Refetch::RateLimited && recent {
            return Next::Refused;
        }
        let (uri, http) = (self.uri.clone(), http.clone());
        let (keys, loaded) = (self.keys.clone(), self.loaded.clone());
        let fetch = async move {
            let body = http.get_json(&uri, IdpEndpoint::Jwks).await?;
            let set = parse_key_set(&body)?;
            keys.store(Arc::new(set));
            loaded.store(true, Ordering::Release);
            Ok(())
        }
        .boxed()
        .shared();
        fetching.started = Some(Instant::now());
        fetching.current = Some(fetch.clone());
        Next::Await(fetch)
    }

    /// The bearer token this key set verified before, exactly `token`
    /// (compared whole, in constant time), while `now` (Unix seconds) is
    /// before its `exp`.
    pub fn verified(&self, token: &str, now: u64) -> Option<Arc<Bearer>> {
        let set = self.keys.load();
        let verified = set.verified.read();
        let (bearer, exp) = verified.by_index.get(&verified.index(token))?;
        // Word-wise, in time that depends on the length only (`subtle`'s
        // byte-wise comparison costs ~10x more on a 1 KB token).
        let same =
            constant_time_eq::constant_time_eq(bearer.token.expose().as_bytes(), token.as_bytes());
        (same && now < *exp).then(|| bearer.clone())
    }

    /// Remembers a bearer token `key` just verified, until its `exp` (Unix
    /// seconds, never beyond: the leeway is not extended to cached tokens).
    /// Not kept when `key` left the set meanwhile, when already expired, or
    /// when the token is longer than [`MAX_VERIFIED_TOKEN_LEN`]. When the
    /// set holds [`MAX_VERIFIED`] tokens or [`MAX_VERIFIED_BYTES`], the
    /// expired ones go, and all of them if that is not enough.
    pub fn remember_verified(&self, key: &Arc<Key>, bearer: Arc<Bearer>, exp: u64, now: u64) {
        let len = bearer.token.expose().len();
        if exp <= now || len > MAX_VERIFIED_TOKEN_LEN {
            return;
        }
        let set = self.keys.load();
        let mut current = set.by_kid.values().chain(set.anonymous.iter());
        if !current.any(|k| Arc::ptr_eq(k, key)) {
            return;
        }
        let mut verified = set.verified.write();
        let index = verified.index(bearer.token.expose());
        if let Some((old, _)) = verified.by_index.remove(&index) {
            verified.bytes -= entry_bytes(old.token.expose().len());
        }
        verified.make_room(entry_bytes(len), now);
        verified.bytes += entry_bytes(len);
        verified.by_index.insert(index, (bearer, exp));
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let set = self.keys.load();
        match kid {
            Some(kid) => set.by_kid.get(kid).filter(|k| k.alg == alg).cloned(),
            None => set.anonymous.iter().find(|k| k.alg == alg).cloned(),
        }
    }
}

/// Keeps every usable signing key and skips the rest (encryption keys,
/// symmetric keys, curves we cannot verify) instead of failing the whole set.
fn parse_key_set(body: &serde_json::Value) -> Result<KeySet, OidcError> {
    let keys = body
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| OidcError::Invalid("JWKS without a keys array".into()))?;
    let mut set = KeySet::default();
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(alg) = signing_algorithm(&jwk) else {
            continue;
        };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        // Same JWK, same rules: `signing_algorithm` already refused HMAC,
        // encryption keys and mismatched algorithms.
        let jwk_for_oidc = serde_json::from_value::<CoreJsonWebKey>(raw.clone()).ok();
        let key = Arc::new(Key {
            decoding,
            alg,
            jwk: jwk_for_oidc,
        });
        match jwk.common.key_id {
            Some(kid) => {
                set.by_kid.insert(kid, key);
            }
            None => set.anonymous.push(key),
        }
    }
    Ok(set)
}

/// The algorithm a key verifies: the one it declares, else the usual one for
/// its type. Symmetric keys are never usable: an HMAC "public key" would let
/// anyone who read the JWKS mint tokens.
pub fn signing_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm.and_then(|a| match a {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
        _ => None,
    });
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            Some(
                a @ (Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512),
            ) => Some(a),
            None if jwk.common.key_algorithm.is_none() => Some(Algorithm::RS256),
            _ => None,
        },
        AlgorithmParameters::EllipticCurve(p) => match (&p.curve, declared) {
            (EllipticCurve::P256, None | Some(Algorithm::ES256)) => Some(Algorithm::ES256),
            (EllipticCurve::P384, None | Some(Algorithm::ES384)) => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => match declared {
            None | Some(Algorithm::EdDSA) => Some(Algorithm::EdDSA),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    use std::sync::atomic::AtomicUsize;

    fn http() -> IdpHttp {
        IdpHttp::new(None, crate::metrics::Metrics::new().unwrap()).unwrap()
    }

    /// The test key as a JWKS naming it `kid`.
    fn set_with(kid: &str) -> serde_json::Value {
        let pem = include_str!("../../tests/support/test_key.pem");
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap();
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({"keys": [{
            "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be()),
        }]})
    }

    /// A JWKS endpoint that publishes `k2` and counts its requests.
    async fn rotated_idp() -> (Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap())).unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let count = hits.clone();
        let handler = crate::demo::http_server::handler(move |_req| {
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                // Slow enough that every caller below arrives while it runs.
                tokio::time::sleep(Duration::from_millis(50)).await;
                http::Response::new(set_with("k2").to_string().into_bytes()).into()
            }
        });
        crate::demo::http_server::spawn(listener, handler).unwrap();
        (url, hits)
    }

    #[tokio::test]
    async fn a_back_channel_token_refetches_at_once_once_for_all_callers() {
        let (url, hits) = rotated_idp().await;
        let jwks = Jwks::new(url);
        jwks.seed(&set_with("k1")).unwrap();
        let http = http();
        // Right after a fetch a client's unknown kid fetches nothing...
        let refused = jwks
            .key(Some("k2"), Algorithm::RS256, &http, Refetch::RateLimited)
            .await;
        assert!(matches!(refused, Err(OidcError::Token(_))));
        assert_eq!(hits.load(Ordering::SeqCst), 0);
        // ...while ID tokens from the token endpoint refetch, one fetch for all.
        let lookups = (0..10).map(|_| jwks.key(Some("k2"), Algorithm::RS256, &http, Refetch::Now));
        for r in futures::future::join_all(lookups).await {
            assert!(r.is_ok());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // A kid still unknown after that refetches again only for ID tokens.
        let unknown = jwks
            .key(Some("k9"), Algorithm::RS256, &http, Refetch::RateLimited)
            .await;
        assert!(matches!(unknown, Err(OidcError::Token(_))));
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn client_tokens_join_a_running_fetch_but_never_start_one_early() {
        let (url, hits) = rotated_idp().await;
        let jwks = Jwks::new(url);
        jwks.seed(&set_with("k1")).unwrap();
        let http = http();
        let (back_channel, client) = futures::join!(
            jwks.key(Some("k2"), Algorithm::RS256, &http, Refetch::Now),
            jwks.key(Some("k2"), Algorithm::RS256, &http, Refetch::RateLimited),
        );
        assert!(back_channel.is_ok());
        assert!(client.is_ok(), "joined the running fetch");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let body = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "sXch", "e": "AQAB"},
            {"kty": "RSA", "kid": "sig", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"},
            {"kty": "weird"}
        ]});
        let set = parse_key_set(&body).unwrap();
        assert_eq!(set.by_kid.len(), 1);
        assert!(set.by_kid.contains_key("sig"));
    }

    #[test]
    fn rsa_key_declared_for_encryption_algorithm_is_not_a_signing_key() {
        let jwk: Jwk = serde_json::from_value(
            serde_json::json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "sXch", "e": "AQAB"}),
        )
        .unwrap();
        assert_eq!(signing_algorithm(&jwk), None);
    }

    /// A verified token as `verify_bearer` builds it.
    fn bearer(token: &str, exp: u64) -> Arc<Bearer> {
        let claims = serde_json::json!({"sub": "alice", "exp": exp});
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        Arc::new(Bearer::new(
            token,
            crate::domain::Identity::default(),
            claims,
        ))
    }

    #[test]
    fn verified_tokens_last_until_exp_and_die_with_their_key_set() {
        let jwks = Jwks::new(Url::parse("http://127.0.0.1:1/jwks").unwrap());
        jwks.seed(&set_with("k1")).unwrap();
        let key = jwks.lookup(Some("k1"), Algorithm::RS256).unwrap();
        jwks.remember_verified(&key, bearer("tok", 200), 200, 100);
        assert!(jwks.verified("tok", 199).is_some());
        assert!(jwks.verified("tok", 200).is_none(), "never past exp");
        assert!(jwks.verified("other", 150).is_none());
        // Already expired, or too long: not kept.
        jwks.remember_verified(&key, bearer("old", 100), 100, 100);
        assert!(jwks.verified("old", 50).is_none());
        let long = "x".repeat(MAX_VERIFIED_TOKEN_LEN + 1);
        jwks.remember_verified(&key, bearer(&long, 200), 200, 100);
        assert!(jwks.verified(&long, 150).is_none());
        // A new key set (rotation) forgets every verified token, and a key
        // no longer in the set adds none.
        jwks.seed(&set_with("k2")).unwrap();
        assert!(jwks.verified("tok", 150).is_none());
        jwks.remember_verified(&key, bearer("tok", 200), 200, 100);
        assert!(jwks.verified("tok", 150).is_none());
    }

    #[test]
    fn tokens_sharing_their_indexed_tail_never_hit_for_each_other() {
        let jwks = Jwks::new(Url::parse("http://127.0.0.1:1/jwks").unwrap());
        jwks.seed(&set_with("k1")).unwrap();
        let key = jwks.lookup(Some("k1"), Algorithm::RS256).unwrap();
        let sig = "s".repeat(INDEXED_TAIL);
        let (a, b) = (format!("h.alice.{sig}"), format!("h.mallory.{sig}"));
        jwks.remember_verified(&key, bearer(&a, 200), 200, 100);
        assert!(jwks.verified(&a, 150).is_some());
        assert!(jwks.verified(&b, 150).is_none());
        // The later one replaces the earlier: still never the other's entry.
        jwks.remember_verified(&key, bearer(&b, 200), 200, 100);
        assert!(jwks.verified(&a, 150).is_none());
        assert_eq!(
            &**jwks.verified(&b, 150).unwrap().token.expose(),
            b.as_str()
        );
        assert_eq!(jwks.keys.load().verified.read().bytes, entry_bytes(b.len()));
    }

    #[test]
    fn the_cache_stays_within_its_entry_and_byte_bounds() {
        let jwks = Jwks::new(Url::parse("http://127.0.0.1:1/jwks").unwrap());
        jwks.seed(&set_with("k1")).unwrap();
        let key = jwks.lookup(Some("k1"), Algorithm::RS256).unwrap();
        let within = |jwks: &Jwks| {
            let set = jwks.keys.load();
            let v = set.verified.read();
            let counted: usize = v
                .by_index
                .values()
                .map(|(b, _)| entry_bytes(b.token.expose().len()))
                .sum();
            assert_eq!(v.bytes, counted);
            assert!(v.by_index.len() <= MAX_VERIFIED && v.bytes <= MAX_VERIFIED_BYTES);
            v.by_index.len()
        };
        // Small tokens: the entry bound holds, and the newest is kept.
        let mut most = 0;
        for i in 0..3 * MAX_VERIFIED {
            let tok = format!("h.p.sig-{i}");
            jwks.remember_verified(&key, bearer(&tok, 200), 200, 100);
            assert!(jwks.verified(&tok, 150).is_some());
            most = most.max(within(&jwks));
        }
        assert!(most > MAX_VERIFIED / 2, "it does remember: {most}");
        // Expired ones go first: the live ones stay.
        jwks.seed(&set_with("k1")).unwrap();
        let key = jwks.lookup(Some("k1"), Algorithm::RS256).unwrap();
        for i in 0..MAX_VERIFIED - 1 {
            let tok = format!("h.p.old-{i}");
            jwks.remember_verified(&key, bearer(&tok, 120), 120, 100);
        }
        jwks.remember_verified(&key, bearer("h.p.live", 300), 300, 100);
        jwks.remember_verified(&key, bearer("h.p.new", 300), 300, 130);
        assert!(jwks.verified("h.p.live", 150).is_some());
        assert_eq!(within(&jwks), 2);
        // Big tokens: the byte bound holds.
        for i in 0..2 * MAX_VERIFIED_BYTES / MAX_VERIFIED_TOKEN_LEN {
            let tok = format!("{}.{i}", "b".repeat(MAX_VERIFIED_TOKEN_LEN - 10));
            jwks.remember_verified(&key, bearer(&tok, 300), 300, 100);
            assert!(jwks.verified(&tok, 150).is_some());
            within(&jwks);
        }
    }
}
