//! The JWKS cache: keys by `kid`, refetched when a token names a `kid` we do
//! not know (key rotation at the IdP), at most once per [`REFETCH_MIN_INTERVAL`]
//! so a flood of forged `kid`s cannot turn into a flood of IdP calls.
//!
//! Each key is held twice: for `jsonwebtoken` (bearer and logout tokens) and
//! as `openidconnect`'s `CoreJsonWebKey` (ID tokens), parsed from the same
//! JWK, so both verifiers see the same keys and the same rotation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use openidconnect::core::CoreJsonWebKey;
use url::Url;

use super::http::IdpHttp;
use super::OidcError;
use crate::metrics::IdpEndpoint;

/// An unknown `kid` refetches the JWKS at most this often.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);

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

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys published without a `kid`, tried when a token has none.
    anonymous: Vec<Arc<Key>>,
}

/// One issuer's key cache. Lookups are lock-free; only a refetch locks.
pub struct Jwks {
    uri: Url,
    keys: ArcSwap<KeySet>,
    loaded: std::sync::atomic::AtomicBool,
    /// Serialises refetches; only ever awaited off the hot path (unknown kid).
    refetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// An empty cache for the key set at `uri`; [`Jwks::load`] fills it.
    pub fn new(uri: Url) -> Self {
        Jwks {
            uri,
            keys: ArcSwap::from_pointee(KeySet::default()),
            loaded: std::sync::atomic::AtomicBool::new(false),
            refetch: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a key set was ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Fetches the set now, replacing the cached one on success.
    pub async fn load(&self, http: &IdpHttp) -> Result<(), OidcError> {
        let body = http.get_json(&self.uri, IdpEndpoint::Jwks).await?;
        self.seed(&body).await
    }

    /// Replaces the cached set with `body` (a JWKS document) as if fetched
    /// now: discovery hands over the set it fetched.
    pub async fn seed(&self, body: &serde_json::Value) -> Result<(), OidcError> {
        let set = parse_key_set(body)?;
        self.keys.store(Arc::new(set));
        self.loaded
            .store(true, std::sync::atomic::Ordering::Release);
        let mut last = self.refetch.lock().await;
        *last = Some(Instant::now());
        Ok(())
    }

    /// The key for a token header. An unknown `kid` triggers one
    /// rate-limited refetch before giving up.
    pub async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        http: &IdpHttp,
    ) -> Result<Arc<Key>, OidcError> {
        if let Some(k) = self.lookup(kid, alg) {
            return Ok(k);
        }
        {
            let mut last = self.refetch.lock().await;
            // Another task may have refetched while we waited.
            if let Some(k) = self.lookup(kid, alg) {
                return Ok(k);
            }
            let due = last.is_none_or(|t| t.elapsed() >= REFETCH_MIN_INTERVAL);
            if !due {
                return Err(OidcError::Token("unknown signing key".into()));
            }
            *last = Some(Instant::now());
            let body = http.get_json(&self.uri, IdpEndpoint::Jwks).await?;
            let set = parse_key_set(&body)?;
            self.keys.store(Arc::new(set));
            self.loaded
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.lookup(kid, alg)
            .ok_or_else(|| OidcError::Token("unknown signing key".into()))
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
}
