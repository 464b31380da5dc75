//! JWT verification with `jsonwebtoken` for the tokens that are not ID
//! tokens: `Authorization: Bearer` JWTs and back-channel logout tokens
//! (ID tokens go through `openidconnect`, see [`super::id_token`]).

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::http::IdpHttp;
use super::jwks::Refetch;
use super::{Issuer, OidcError};

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

/// Signature with the key's own algorithm, then `iss`, `aud`, `exp`, `nbf`.
pub async fn verify(
    issuer: &Issuer,
    http: &IdpHttp,
    token: &str,
    kind: Kind,
) -> Result<Map<String, Value>, OidcError> {
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
    // A bearer token verified before by this key set, still before its
    // `exp`: the same answer without the signature check.
    let now = crate::clock::unix_now();
    if kind == Kind::Bearer {
        if let Some(claims) = jwks.verified_claims(token, now) {
            return Ok(Map::clone(&claims));
        }
    }
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
    if kind == Kind::Bearer {
        if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
            let shared = std::sync::Arc::new(claims.clone());
            jwks.remember_verified(&key, token, shared, exp, now);
        }
    }
    if kind == Kind::Logout {
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
    Ok(claims)
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
