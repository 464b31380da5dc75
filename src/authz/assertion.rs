//! The signed identity assertion (`assertion`): a compact JWS (RFC 7515,
//! ES256 per RFC 7518 §3.4, `kid` = the RFC 7638 thumbprint of the key)
//! that every allow carries upstream, and the JWKS (RFC 7517) that
//! `/oauth2/jwks.json` publishes so upstreams (Grafana's `[auth.jwt]`) can
//! verify it instead of trusting the network.
//!
//! Called by the decision on an allow (all three front ends and
//! `/oauth2/auth`); never blocks (one short lock on a bounded cache),
//! never panics, never logs. One signature per identity and audience per
//! lifetime: an assertion is reused until shortly before it expires.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::HeaderValue;
use p256::ecdsa::signature::Signer as _;
use parking_lot::Mutex;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::Grant;
use crate::config::Assertion;

/// At most this many cached assertions (identity × audience); past it the
/// expired ones go, and if none has, the whole cache (one signature each
/// to rebuild it).
const CACHE_CAP: usize = 10_000;

/// Signs assertions with the configured key and publishes the keys.
/// Built per configuration (a reload builds a new one, re-reading the key).
pub struct Signer {
    key: p256::ecdsa::SigningKey,
    /// `base64url(header)` with `alg`, `typ` and `kid`, computed once.
    header: String,
    issuer: String,
    audience: Option<String>,
    lifetime: u64,
    /// The `/oauth2/jwks.json` body, computed once.
    jwks: Bytes,
    cache: Mutex<HashMap<String, (HeaderValue, u64)>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// One public key as a JWK (RFC 7518 §6.2) and its RFC 7638 thumbprint.
fn jwk(pk: &p256::PublicKey) -> (serde_json::Value, String) {
    let point = pk.to_sec1_bytes();
    // Uncompressed SEC1: 0x04 || x (32) || y (32).
    let (x, y) = match point.get(1..33).zip(point.get(33..65)) {
        Some((x, y)) => (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y)),
        None => (String::new(), String::new()),
    };
    // RFC 7638 §3.2: the required members, sorted, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "x": x, "y": y,
        "kid": kid, "use": "sig", "alg": "ES256",
    });
    (jwk, kid)
}

impl Signer {
    /// The signer for a validated `assertion` section (the key was read
    /// and parsed by `config::load`, so this cannot fail). The reload path
    /// calls it with the new configuration.
    pub fn new(cfg: &Assertion) -> Signer {
        let secret = cfg.signing_key.expose();
        let (current, kid) = jwk(&secret.public_key());
        let mut keys = vec![current];
        keys.extend(cfg.previous_public_keys.iter().map(|pk| jwk(pk).0));
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        Signer {
            key: p256::ecdsa::SigningKey::from(secret),
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            lifetime: cfg.lifetime.as_secs(),
            jwks: Bytes::from(json!({ "keys": keys }).to_string()),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The JWKS body `/oauth2/jwks.json` serves: the current key first,
    /// then the previous ones.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }

    /// The assertion for `grant` on `host` (`host[:port]`; the audience
    /// unless `assertion.audience` is set) at `now` (Unix seconds): a
    /// cached one while it has more than a quarter of its lifetime (at most
    /// 30 s) left, else a fresh signature.
    pub fn assertion(&self, grant: &Grant, host: &str, now: u64) -> Option<HeaderValue> {
        let aud = self.audience.as_deref().unwrap_or(host);
        let id = &grant.identity;
        let sub: &str = if grant.sub.is_empty() {
            &id.user
        } else {
            &grant.sub
        };
        // The key is everything the token says but its times: equal keys
        // make equal assertions, so reuse cannot hand out another's.
        let mut key = String::with_capacity(128);
        for part in [aud, sub, &id.user, &id.email, &id.preferred_username] {
            key.push_str(part);
            key.push('\0');
        }
        for g in &id.groups {
            key.push_str(g);
            key.push('\u{1}');
        }
        let margin = (self.lifetime / 4).min(30);
        if let Some((v, exp)) = self.cache.lock().get(&key) {
            if now + margin < *exp {
                return Some(v.clone());
            }
        }
        let exp = now + self.lifetime;
        let claims = json!({
            "iss": self.issuer, "aud": aud, "sub": sub,
            "email": id.email, "groups": id.groups,
            "preferred_username": id.preferred_username, "user": id.user,
            "iat": now, "exp": exp,
        });
        let signing_input = format!(
            "{}.{}",
            self.header,
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: p256::ecdsa::Signature = self.key.sign(signing_input.as_bytes());
        let jws = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        let value = HeaderValue::from_str(&jws).ok()?;
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_CAP {
            cache.retain(|_, (_, e)| now + margin < *e);
            if cache.len() >= CACHE_CAP {
                cache.clear();
            }
        }
        cache.insert(key, (value.clone(), exp));
        Some(value)
    }

    /// How many assertions are cached (for tests and benchmarks).
    pub fn cached(&self) -> usize {
        self.cache.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Identity;
    use crate::domain::Secret;
    use std::sync::Arc;
    use std::time::Duration;

    fn signer(audience: Option<&str>) -> Signer {
        let key = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        Signer::new(&Assertion {
            header: http::HeaderName::from_static("x-auth-request-jwt"),
            signing_key: Secret::new(key),
            previous_public_keys: vec![],
            issuer: "authgate".into(),
            audience: audience.map(str::to_owned),
            lifetime: Duration::from_secs(120),
        })
    }

    fn grant(email: &str) -> Grant {
        Grant {
            identity: Arc::new(Identity {
                user: email.into(),
                email: email.into(),
                preferred_username: "a".into(),
                groups: vec!["admins".into()],
            }),
            id_token: None,
            access_token: None,
            set_cookies: vec![],
            sub: Arc::from("sub-1"),
            claims: None,
            assertion: None,
        }
    }

    fn payload(v: &HeaderValue) -> serde_json::Value {
        let parts: Vec<&str> = v.to_str().unwrap().split('.').collect();
        assert_eq!(parts.len(), 3);
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
    }

    #[test]
    fn one_signature_per_identity_and_audience_until_near_expiry() {
        let s = signer(None);
        let a = s
            .assertion(&grant("a@x.io"), "app.example.com:8443", 1000)
            .unwrap();
        assert_eq!(
            s.assertion(&grant("a@x.io"), "app.example.com:8443", 1089),
            Some(a.clone())
        );
        assert_ne!(
            s.assertion(&grant("b@x.io"), "app.example.com:8443", 1000),
            Some(a.clone())
        );
        assert_ne!(
            s.assertion(&grant("a@x.io"), "other", 1000),
            Some(a.clone())
        );
        // 30 s before its expiry a fresh one is signed.
        let fresh = s
            .assertion(&grant("a@x.io"), "app.example.com:8443", 1091)
            .unwrap();
        assert_ne!(fresh, a);
        let p = payload(&fresh);
        assert_eq!(p["iat"], 1091);
        assert_eq!(p["exp"], 1211);
        assert_eq!(p["aud"], "app.example.com:8443");
        assert_eq!(p["sub"], "sub-1");
        assert_eq!(p["groups"], json!(["admins"]));
        assert_eq!(s.cached(), 3);
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint_published_in_the_jwks() {
        let s = signer(Some("grafana"));
        let a = s.assertion(&grant("a@x.io"), "h", 1).unwrap();
        let head: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(a.to_str().unwrap().split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(head["alg"], "ES256");
        let jwks: serde_json::Value = serde_json::from_slice(&s.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], head["kid"]);
        assert_eq!(payload(&a)["aud"], "grafana");
        // The signature verifies with the published key (jsonwebtoken, ring).
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_audience(&["grafana"]);
        v.validate_exp = false;
        jsonwebtoken::decode::<serde_json::Value>(a.to_str().unwrap(), &key, &v).unwrap();
    }
}
