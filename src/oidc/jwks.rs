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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures::future::{BoxFuture, FutureExt, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreJsonWebKey;
use parking_lot::Mutex;
use url::Url;

use super::http::IdpHttp;
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
/// Longer bearer tokens are verified every time (memory bound: at most
/// [`MAX_VERIFIED`] x 8 KiB of tokens plus their claims per key set).
pub const MAX_VERIFIED_TOKEN_LEN: usize = 8 * 1024;

/// Bearer tokens this key set verified, with their claims and `exp`.
type Verified = HashMap<Box<str>, (Arc<serde_json::Map<String, serde_json::Value>>, u64)>;

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`, tried when a token has none.
    anonymous: Vec<Arc<Key>>,
    /// Verified bearer tokens: they live and die with this set, so a
    /// refetched key set (rotation, a key withdrawn) starts empty.
    verified: Mutex<Verified>,
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

    /// The claims of a bearer token this key set verified before, while
    /// `now` (Unix seconds) is before its `exp`.
    pub fn verified_claims(
        &self,
        token: &str,
        now: u64,
    ) -> Option<Arc<serde_json::Map<String, serde_json::Value>>> {
        let set = self.keys.load();
        let verified = set.verified.lock();
        let (claims, exp) = verified.get(token)?;
        (now < *exp).then(|| claims.clone())
    }

    /// Remembers a bearer token `key` just verified, until its `exp` (Unix
    /// seconds, never beyond: the leeway is not extended to cached tokens).
    /// Not kept when `key` left the set meanwhile, when already expired, or
    /// when the token is longer than [`MAX_VERIFIED_TOKEN_LEN`].
    pub fn remember_verified(
        &self,
        key: &Arc<Key>,
        token: &str,
        claims: Arc<serde_json::Map<String, serde_json::Value>>,
        exp: u64,
        now: u64,
    ) {
        if exp <= now || token.len() > MAX_VERIFIED_TOKEN_LEN {
            return;
        }
        let set = self.keys.load();
        let mut current = set.by_kid.values().chain(set.anonymous.iter());
        if !current.any(|k| Arc::ptr_eq(k, key)) {
            return;
        }
        let mut verified = set.verified.lock();
        if verified.len() >= MAX_VERIFIED {
            verified.retain(|_, (_, e)| *e > now);
            if verified.len() >= MAX_VERIFIED {
                verified.clear();
            }
        }
        verified.insert(token.into(), (claims, exp));
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

    #[test]
    fn verified_tokens_last_until_exp_and_die_with_their_key_set() {
        let jwks = Jwks::new(Url::parse("http://127.0.0.1:1/jwks").unwrap());
        jwks.seed(&set_with("k1")).unwrap();
        let key = jwks.lookup(Some("k1"), Algorithm::RS256).unwrap();
        let claims = Arc::new(serde_json::Map::new());
        jwks.remember_verified(&key, "tok", claims.clone(), 200, 100);
        assert!(jwks.verified_claims("tok", 199).is_some());
        assert!(jwks.verified_claims("tok", 200).is_none(), "never past exp");
        assert!(jwks.verified_claims("other", 150).is_none());
        // Already expired, or too long: not kept.
        jwks.remember_verified(&key, "old", claims.clone(), 100, 100);
        assert!(jwks.verified_claims("old", 50).is_none());
        let long = "x".repeat(MAX_VERIFIED_TOKEN_LEN + 1);
        jwks.remember_verified(&key, &long, claims.clone(), 200, 100);
        assert!(jwks.verified_claims(&long, 150).is_none());
        // A new key set (rotation) forgets every verified token, and a key
        // no longer in the set adds none.
        jwks.seed(&set_with("k2")).unwrap();
        assert!(jwks.verified_claims("tok", 150).is_none());
        jwks.remember_verified(&key, "tok", claims, 200, 100);
        assert!(jwks.verified_claims("tok", 150).is_none());
    }
}
