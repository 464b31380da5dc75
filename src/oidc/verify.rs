//! JWT verification with `jsonwebtoken` for the tokens that are not ID
//! tokens: `Authorization: Bearer` JWTs and back-channel logout tokens
//! (ID tokens go through `openidconnect`, see [`super::id_token`]).

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::http::IdpHttp;
use super::jwks::{Jwks, Key, Refetch};
use super::{Issuer, OidcError};
use crate::domain::{Identity, Secret};

/// Leeway for `exp`, `nbf` and `iat` against clock skew with the IdP.
const LEEWAY_SECS: u64 = 30;
/// Back-Channel Logout tokens older than this are refused (replay window).
const LOGOUT_TOKEN_MAX_AGE_SECS: u64 = 300;

/// Which token is verified: they differ in the claims they must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An access token (or ID token) sent as `Authorization: Bearer`.
    Bearer,
    /// An OIDC Back-Channel Logout 1.0 logout token.
    Logout,
}

/// A verified `Authorization: Bearer` JWT and what a request needs of it,
/// built once per token: while the key set that verified it remembers it,
/// every request presenting the same token shares this (one `Arc` clone per
/// field, no decoding). `Debug` shows neither the token nor the claims.
pub struct Bearer {
    /// The token itself (forwarded upstream with `pass_authorization`).
    pub token: Secret<Arc<str>>,
    /// Who it names, mapped through `provider.claims`.
    pub identity: Arc<Identity>,
    /// The `sub` claim; empty when absent.
    pub sub: Arc<str>,
    /// Every verified claim.
    pub claims: Arc<Map<String, Value>>,
    /// The `exp` claim (Unix seconds) when it is an integer: only then is
    /// the token remembered, and never past it.
    pub exp: Option<u64>,
    /// The claims as policies read them ([`Bearer::policy_claims`]).
    policy_view: OnceLock<Option<Arc<Map<String, Value>>>>,
}

impl Bearer {
    /// The verified `claims` of `token` and the `identity` they map to.
    pub(super) fn new(token: &str, identity: Identity, claims: Map<String, Value>) -> Bearer {
        Bearer {
            token: Secret::new(Arc::from(token)),
            identity: Arc::new(identity),
            sub: Arc::from(
                claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            ),
            exp: claims.get("exp").and_then(Value::as_u64),
            claims: Arc::new(claims),
            policy_view: OnceLock::new(),
        }
    }

    /// The claims as policy expressions read them: `view` applied to
    /// [`Bearer::claims`] by the first request that asks, shared after that.
    /// `view` must depend on the claims only (every caller passes the same).
    pub fn policy_claims(
        &self,
        view: impl FnOnce(&Map<String, Value>) -> Option<Arc<Map<String, Value>>>,
    ) -> Option<Arc<Map<String, Value>>> {
        self.policy_view.get_or_init(|| view(&self.claims)).clone()
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("token", &self.token)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// The bearer token one of `issuers`' current key sets verified before,
/// while `now` (Unix seconds) is before its `exp`: the whole token is
/// compared (in constant time), nothing is decoded or copied. The leeway is
/// not extended to remembered tokens: from `exp` on the token is verified
/// again, as any token not seen before (the leeway applies there).
pub fn cached_bearer<'a>(
    issuers: impl IntoIterator<Item = &'a Issuer>,
    token: &str,
    now: u64,
) -> Option<Arc<Bearer>> {
    issuers.into_iter().find_map(|issuer| {
        let jwks = issuer.jwks.load();
        Option::as_ref(&jwks)?.verified(token, now)
    })
}

/// Verifies a bearer token ([`verify`]), then `accept` (the provider's own
/// rules, e.g. a verified e-mail) maps its claims to an identity or refuses
/// it. An accepted token with an integer `exp` is remembered by the key set
/// that verified it (see [`Jwks::remember_verified`]).
pub async fn verify_bearer(
    issuer: &Issuer,
    http: &IdpHttp,
    token: &str,
    now: u64,
    accept: impl FnOnce(&Map<String, Value>) -> Result<Identity, OidcError>,
) -> Result<Arc<Bearer>, OidcError> {
    let (claims, key, jwks) = verify_signed(issuer, http, token, Kind::Bearer).await?;
    let identity = accept(&claims)?;
    let bearer = Arc::new(Bearer::new(token, identity, claims));
    if let Some(exp) = bearer.exp {
        jwks.remember_verified(&key, bearer.clone(), exp, now);
    }
    Ok(bearer)
}

/// Signature with the key's own algorithm, then `iss`, `aud`, `exp`, `nbf`
/// (a logout token: `iat` and its age instead of a required `exp`).
pub async fn verify(
    issuer: &Issuer,
    http: &IdpHttp,
    token: &str,
    kind: Kind,
) -> Result<Map<String, Value>, OidcError> {
    verify_signed(issuer, http, token, kind)
        .await
        .map(|(claims, _, _)| claims)
}

/// [`verify`], also returning the key that verified the token and the cache
/// it came from.
async fn verify_signed(
    issuer: &Issuer,
    http: &IdpHttp,
    token: &str,
    kind: Kind,
) -> Result<(Map<String, Value>, Arc<Key>, Arc<Jwks>), OidcError> {
    // `decode_header` refuses `alg: none` (not an Algorithm variant).
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| OidcError::Token("malformed token".into()))?;
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return Err(OidcError::Token(
            "symmetric algorithms are never accepted".into(),
        ));
    }
    let jwks = issuer.jwks.load_full().ok_or(OidcError::NotReady)?;
    // Both kinds reach authgate from a client (the logout endpoint is as
    // public as any other path): their `kid` may be forged, so an unknown one
    // refetches only as the rate limit allows.
    let key = jwks
        .key(
            header.kid.as_deref(),
            header.alg,
            http,
            Refetch::RateLimited,
        )
        .await?;
    let mut v = Validation::new(key.alg);
    v.leeway = LEEWAY_SECS;
    v.validate_nbf = true;
    v.set_issuer(&[issuer.expected_iss()]);
    v.set_audience(&issuer.audiences);
    match kind {
        // Logout tokens carry no `exp` in some IdPs; `iat` bounds them instead.
        Kind::Logout => v.set_required_spec_claims(&["iss", "aud", "iat"]),
        _ => v.set_required_spec_claims(&["exp", "iss", "aud"]),
    }
    if kind == Kind::Logout {
        v.validate_exp = false;
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v)
        .map_err(|e| OidcError::Token(format!("{:?}", e.kind())))?;
    let claims = data.claims;
    if kind == Kind::Logout {
        let now = crate::clock::unix_now();
        let iat = claims.get("iat").and_then(Value::as_u64).unwrap_or(0);
        if iat + LOGOUT_TOKEN_MAX_AGE_SECS < now || iat > now + LEEWAY_SECS {
            return Err(OidcError::Token("logout token too old".into()));
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            if exp + LEEWAY_SECS < now {
                return Err(OidcError::Token("logout token expired".into()));
            }
        }
    }
    Ok((claims, key, jwks))
}

/// The unverified `iss`, only to pick which issuer's keys verify the token.
pub fn peek_issuer(token: &str) -> Result<String, OidcError> {
    let bad = || OidcError::Token("malformed token".into());
    let payload = token.split('.').nth(1).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    v.get("iss")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// String equality in time independent of where they differ (state, nonce,
/// `at_hash`).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::Metadata;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    use serde_json::json;
    use url::Url;

    const PEM: &str = include_str!("../../tests/support/test_key.pem");
    const ISS: &str = "https://idp.test";

    /// An issuer with fixed endpoints whose key set holds the test key as
    /// `k1` (seeded: no fetch, and a client's unknown `kid` fetches nothing).
    fn issuer() -> Issuer {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(PEM).unwrap();
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let set = json!({"keys": [{
            "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
            "n": b64(key.n().to_bytes_be()), "e": b64(key.e().to_bytes_be()),
        }]});
        let url = |p: &str| Url::parse(&format!("{ISS}{p}")).unwrap();
        let md = Metadata {
            issuer: ISS.into(),
            authorization_endpoint: url("/auth"),
            token_endpoint: url("/token"),
            userinfo_endpoint: None,
            jwks_uri: Url::parse("http://127.0.0.1:1/jwks").unwrap(),
            end_session_endpoint: None,
            token_auth: vec![],
        };
        let issuer = Issuer::new(url(""), vec!["authgate".into()], Some(md));
        issuer.jwks.load_full().unwrap().seed(&set).unwrap();
        issuer
    }

    fn http() -> IdpHttp {
        IdpHttp::new(None, crate::metrics::Metrics::new().unwrap()).unwrap()
    }

    fn sign(claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn token(sub: &str, exp: u64) -> String {
        sign(&json!({"iss": ISS, "aud": "authgate", "sub": sub, "exp": exp}))
    }

    async fn check(issuer: &Issuer, token: &str, now: u64) -> Result<Arc<Bearer>, OidcError> {
        verify_bearer(issuer, &http(), token, now, |c| {
            Ok(Identity {
                user: c["sub"].as_str().unwrap_or_default().into(),
                ..Identity::default()
            })
        })
        .await
    }

    #[tokio::test]
    async fn a_remembered_token_is_shared_until_its_exp_and_never_at_or_past_it() {
        let issuer = issuer();
        let now = crate::clock::unix_now();
        let tok = token("alice", now + 100);
        assert!(cached_bearer([&issuer], &tok, now).is_none());
        let first = check(&issuer, &tok, now).await.unwrap();
        let hit = cached_bearer([&issuer], &tok, now).unwrap();
        assert!(Arc::ptr_eq(&first, &hit), "shared, not copied");
        assert_eq!(hit.identity.user, "alice");
        assert_eq!(&*hit.sub, "alice");
        assert_eq!(&**hit.token.expose(), tok.as_str());
        assert!(cached_bearer([&issuer], &tok, now + 99).is_some());
        assert!(
            cached_bearer([&issuer], &tok, now + 100).is_none(),
            "at exp"
        );
        assert!(
            cached_bearer([&issuer], &tok, now + 5000).is_none(),
            "past exp"
        );
        // Past exp and the leeway, verification refuses it as before.
        let old = token("bob", now - LEEWAY_SECS - 5);
        assert!(check(&issuer, &old, now).await.is_err());
        // Within the leeway it passes, but is not remembered past its exp.
        let late = token("carol", now - 5);
        assert!(check(&issuer, &late, now).await.is_ok());
        assert!(cached_bearer([&issuer], &late, now).is_none());
    }

    #[tokio::test]
    async fn only_the_exact_token_hits() {
        let issuer = issuer();
        let now = crate::clock::unix_now();
        let tok = token("alice", now + 100);
        check(&issuer, &tok, now).await.unwrap();
        let (signed, sig) = tok.rsplit_once('.').unwrap();
        // Same header and payload, another signature.
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed}.{flipped}{}", &sig[1..]);
        // Same signature (the part the cache is indexed by), another payload.
        let (header, _) = signed.split_once('.').unwrap();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            json!({"iss": ISS, "aud": "authgate", "sub": "mallory", "exp": now + 100}).to_string(),
        );
        let spliced = format!("{header}.{payload}.{sig}");
        let cut = &tok[..tok.len() - 1];
        let longer = format!("{tok}A");
        for other in [forged.as_str(), spliced.as_str(), cut, longer.as_str()] {
            assert!(cached_bearer([&issuer], other, now).is_none());
            assert!(check(&issuer, other, now).await.is_err());
        }
        // The refusals evicted nothing.
        assert!(cached_bearer([&issuer], &tok, now).is_some());
    }

    #[tokio::test]
    async fn a_token_the_provider_refuses_is_not_remembered() {
        let issuer = issuer();
        let now = crate::clock::unix_now();
        let tok = token("alice", now + 100);
        let refused = verify_bearer(&issuer, &http(), &tok, now, |_| {
            Err(OidcError::Token("email address is not verified".into()))
        })
        .await;
        assert!(refused.is_err());
        assert!(cached_bearer([&issuer], &tok, now).is_none());
    }

    #[tokio::test]
    async fn debug_shows_neither_token_nor_claims() {
        let issuer = issuer();
        let now = crate::clock::unix_now();
        let tok = token("alice", now + 100);
        let b = check(&issuer, &tok, now).await.unwrap();
        let shown = format!("{b:?}");
        assert!(
            !shown.contains(&tok[..20]) && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn peek_issuer_rejects_garbage() {
        assert!(peek_issuer("garbage").is_err());
        assert!(peek_issuer("a.!!!.c").is_err());
        // {"iss":"https://i"}
        assert_eq!(
            peek_issuer("x.eyJpc3MiOiJodHRwczovL2kifQ.y").unwrap(),
            "https://i"
        );
    }
}
