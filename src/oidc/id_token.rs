//! ID-token verification (OIDC Core 3.1.3.7) through `openidconnect`, fed
//! from authgate's own JWKS cache: signature with the key's one asymmetric
//! algorithm, `iss`, `aud` (client_id plus `provider.audiences`), `exp`,
//! `nonce`; then `azp`, `at_hash` (3.1.3.8) and `nbf`, which the crate leaves
//! to its caller.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use openidconnect::core::{CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{
    AccessToken, AccessTokenHash, ClaimsVerificationError, ClientId, IssuerUrl, JsonWebKeySet,
    Nonce,
};
use serde_json::{Map, Value};

use super::client::IdToken;
use super::http::IdpHttp;
use super::jwks::{Jwks, Refetch};
use super::verify::constant_time_eq;
use super::OidcError;

/// Leeway for `exp` and `nbf` against clock skew with the IdP (as for
/// bearer tokens).
const LEEWAY: Duration = Duration::from_secs(30);

/// What an ID token must match.
pub struct Expected<'a> {
    /// Our client_id: must be in `aud`, and be `azp` when present.
    pub client_id: &'a str,
    /// The exact `iss`.
    pub issuer: &'a str,
    /// Further `aud` values trusted besides client_id (`provider.audiences`).
    pub audiences: &'a [String],
    /// The flow's nonce; `None` on refresh (OIDC Core 12.2 carries none).
    pub nonce: Option<&'a str>,
    /// The access token issued with it, to check `at_hash` against.
    pub access_token: Option<&'a str>,
}

/// Verifies `token` and returns all its claims as JSON (standard ones as the
/// crate re-serialises them, the rest as sent). Every failure is
/// [`OidcError::Token`], except the JWKS being unreachable when an unknown
/// `kid` makes us refetch.
///
/// `token` must be one authgate itself just received from the token
/// endpoint (a code or refresh grant over its own connection): not chosen by
/// an attacker, so a key rotation at the IdP is met at once. An unknown `kid`
/// refetches the keys without the rate limit of client-presented tokens
/// ([`Refetch::Now`]), and so does a signature that fails with the cached key
/// (a provider that rotated without a new `kid`, or publishes none): one
/// refetch and one more attempt.
pub async fn verify(
    token: &IdToken,
    jwks: &Jwks,
    http: &IdpHttp,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, OidcError> {
    match attempt(token, jwks, http, expected).await {
        Err(Attempt::BadSignature(first)) => {
            if jwks.load(http).await.is_err() {
                return Err(OidcError::Token(first));
            }
            attempt(token, jwks, http, expected)
                .await
                .map_err(|e| match e {
                    Attempt::BadSignature(m) => OidcError::Token(m),
                    Attempt::Failed(e) => e,
                })
        }
        Err(Attempt::Failed(e)) => Err(e),
        Ok(claims) => Ok(claims),
    }
}

/// Why one verification attempt failed: a signature the cached key does not
/// verify is worth one refetch, nothing else is.
enum Attempt {
    BadSignature(String),
    Failed(OidcError),
}

impl From<OidcError> for Attempt {
    fn from(e: OidcError) -> Self {
        Attempt::Failed(e)
    }
}

async fn attempt(
    token: &IdToken,
    jwks: &Jwks,
    http: &IdpHttp,
    expected: &Expected<'_>,
) -> Result<Map<String, Value>, Attempt> {
    let raw = token.to_string();
    // `decode_header` refuses `alg: none` (not an Algorithm variant).
    let header = jsonwebtoken::decode_header(&raw)
        .map_err(|_| OidcError::Token("malformed token".into()))?;
    let alg = core_alg(header.alg)
        .ok_or_else(|| OidcError::Token("symmetric algorithms are never accepted".into()))?;
    // Our cache picks the key (only the algorithm the key itself declares):
    // the crate sees that key alone.
    let key = jwks
        .key(header.kid.as_deref(), header.alg, http, Refetch::Now)
        .await?;
    let jwk = key
        .jwk
        .clone()
        .ok_or_else(|| OidcError::Token("unknown signing key".into()))?;
    let issuer = IssuerUrl::new(expected.issuer.to_owned())
        .map_err(|_| OidcError::Token("bad issuer".into()))?;
    let audiences = expected.audiences.to_vec();
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(expected.client_id.to_owned()),
        issuer,
        JsonWebKeySet::new(vec![jwk.clone()]),
    )
    .set_allowed_algs([alg.clone()])
    .set_other_audience_verifier_fn(move |aud| audiences.iter().any(|a| a == aud.as_str()))
    .set_time_fn(|| chrono::Utc::now() - LEEWAY);
    let nonce = expected.nonce;
    let claims = token
        .claims(&verifier, |got: Option<&Nonce>| match nonce {
            None => Ok(()),
            Some(want) if got.is_some_and(|g| constant_time_eq(g.secret(), want)) => Ok(()),
            Some(_) => Err("nonce mismatch".to_owned()),
        })
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(_) => {
                Attempt::BadSignature(e.to_string())
            }
            e => Attempt::Failed(OidcError::Token(e.to_string())),
        })?;
    // OIDC Core 3.1.3.7 steps 4-5 (the crate leaves `azp` to us): with
    // several audiences `azp` must be present, and when present it must be us.
    match claims.authorized_party() {
        Some(azp) if azp.as_str() != expected.client_id => {
            return Err(OidcError::Token("azp is another client".into()).into())
        }
        None if claims.audiences().len() > 1 => {
            return Err(OidcError::Token("azp missing with several audiences".into()).into())
        }
        _ => {}
    }
    // OIDC Core 3.1.3.8: `at_hash`, when present, binds the access token.
    if let (Some(want), Some(at)) = (claims.access_token_hash(), expected.access_token) {
        let got = AccessTokenHash::from_token(&AccessToken::new(at.to_owned()), &alg, &jwk)
            .map_err(|_| OidcError::Token("at_hash cannot be computed".into()))?;
        if !constant_time_eq(got.as_str(), want.as_str()) {
            return Err(OidcError::Token("at_hash does not match the access token".into()).into());
        }
    }
    let Ok(Value::Object(map)) = serde_json::to_value(claims) else {
        return Err(OidcError::Token("claims are not an object".into()).into());
    };
    if let Some(nbf) = map.get("nbf").and_then(Value::as_u64) {
        if nbf > crate::clock::unix_now() + LEEWAY.as_secs() {
            return Err(OidcError::Token("ImmatureSignature".into()).into());
        }
    }
    Ok(map)
}

/// The asymmetric algorithms authgate accepts (RS/PS/ES/EdDSA); `None` for
/// HMAC, which is never accepted.
fn core_alg(alg: Algorithm) -> Option<CoreJwsSigningAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Algorithm::RS384 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
        Algorithm::RS512 => CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
        Algorithm::PS256 => CoreJwsSigningAlgorithm::RsaSsaPssSha256,
        Algorithm::PS384 => CoreJwsSigningAlgorithm::RsaSsaPssSha384,
        Algorithm::PS512 => CoreJwsSigningAlgorithm::RsaSsaPssSha512,
        Algorithm::ES256 => CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        Algorithm::ES384 => CoreJwsSigningAlgorithm::EcdsaP384Sha384,
        Algorithm::EdDSA => CoreJwsSigningAlgorithm::EdDsa,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    use serde_json::json;
    use sha2::Digest as _;

    const PEM: &str = include_str!("../../tests/support/test_key.pem");
    const ISS: &str = "https://idp.example.com/realms/demo";
    const AT: &str = "the-access-token";

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    async fn keys() -> (Jwks, IdpHttp) {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(PEM).unwrap();
        let jwks = Jwks::new(url::Url::parse("http://127.0.0.1:9/jwks").unwrap());
        let set = json!({"keys": [{
            "kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
            "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
        }]});
        jwks.seed(&set).unwrap();
        let http = IdpHttp::new(None, crate::metrics::Metrics::new().unwrap()).unwrap();
        (jwks, http)
    }

    fn at_hash(at: &str) -> String {
        let h = sha2::Sha256::digest(at.as_bytes());
        b64(&h[..16])
    }

    fn claims() -> Value {
        let now = crate::clock::unix_now();
        json!({
            "iss": ISS, "aud": "authgate", "sub": "alice-id", "iat": now, "exp": now + 300,
            "nonce": "n-1", "email": "alice@example.com", "email_verified": true,
            "realm_access": {"roles": ["admins"]}, "sid": "s-1", "at_hash": at_hash(AT),
        })
    }

    fn sign(claims: &Value) -> IdToken {
        sign_with(claims, jsonwebtoken::Algorithm::RS256)
    }

    fn sign_with(claims: &Value, alg: jsonwebtoken::Algorithm) -> IdToken {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some("k1".into());
        let key = match alg {
            jsonwebtoken::Algorithm::HS256 => jsonwebtoken::EncodingKey::from_secret(b"secret"),
            _ => jsonwebtoken::EncodingKey::from_rsa_pem(PEM.as_bytes()).unwrap(),
        };
        let jwt = jsonwebtoken::encode(&header, claims, &key).unwrap();
        serde_json::from_value(Value::String(jwt)).unwrap()
    }

    fn expected<'a>(audiences: &'a [String]) -> Expected<'a> {
        Expected {
            client_id: "authgate",
            issuer: ISS,
            audiences,
            nonce: Some("n-1"),
            access_token: Some(AT),
        }
    }

    async fn check(claims: &Value, audiences: &[String]) -> Result<Map<String, Value>, OidcError> {
        let (jwks, http) = keys().await;
        verify(&sign(claims), &jwks, &http, &expected(audiences)).await
    }

    #[tokio::test]
    async fn a_good_token_yields_every_claim_for_dotted_paths() {
        let map = check(&claims(), &[]).await.unwrap();
        assert_eq!(map["sub"], "alice-id");
        assert_eq!(map["email"], "alice@example.com");
        assert_eq!(map["email_verified"], true);
        assert_eq!(map["realm_access"]["roles"], json!(["admins"]));
        assert_eq!(map["sid"], "s-1");
    }

    #[tokio::test]
    async fn a_wrong_at_hash_is_refused() {
        let mut c = claims();
        c["at_hash"] = json!(at_hash("another-access-token"));
        let err = check(&c, &[]).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Token(m) if m.contains("at_hash")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_token_without_at_hash_still_verifies() {
        let mut c = claims();
        c.as_object_mut().unwrap().remove("at_hash");
        assert!(check(&c, &[]).await.is_ok());
    }

    #[tokio::test]
    async fn several_audiences_without_azp_are_refused() {
        let mut c = claims();
        c["aud"] = json!(["authgate", "account"]);
        let trusted = vec!["account".to_owned()];
        let err = check(&c, &trusted).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Token(m) if m.contains("azp")),
            "{err}"
        );
        c["azp"] = json!("authgate");
        assert!(check(&c, &trusted).await.is_ok());
    }

    #[tokio::test]
    async fn a_foreign_azp_is_refused_even_with_one_audience() {
        let mut c = claims();
        c["azp"] = json!("another-client");
        let err = check(&c, &[]).await.unwrap_err();
        assert!(
            matches!(&err, OidcError::Token(m) if m.contains("azp")),
            "{err}"
        );
        c["aud"] = json!(["authgate", "account"]);
        assert!(check(&c, &["account".to_owned()]).await.is_err());
    }

    #[tokio::test]
    async fn audiences_must_include_the_client_and_be_trusted() {
        let mut c = claims();
        c["aud"] = json!("account");
        assert!(check(&c, &["account".to_owned()]).await.is_err());
        c["aud"] = json!(["authgate", "stranger"]);
        c["azp"] = json!("authgate");
        assert!(check(&c, &["account".to_owned()]).await.is_err());
    }

    #[tokio::test]
    async fn nonce_issuer_and_expiry_are_checked() {
        let mut c = claims();
        c["nonce"] = json!("n-2");
        assert!(check(&c, &[]).await.is_err());
        c.as_object_mut().unwrap().remove("nonce");
        assert!(check(&c, &[]).await.is_err());
        let mut c = claims();
        c["iss"] = json!("https://evil.example.com");
        assert!(check(&c, &[]).await.is_err());
        let now = crate::clock::unix_now();
        let mut c = claims();
        c["exp"] = json!(now - 120);
        assert!(check(&c, &[]).await.is_err());
        // Within the 30 s leeway, as for bearer tokens.
        c["exp"] = json!(now - 5);
        assert!(check(&c, &[]).await.is_ok());
        let mut c = claims();
        c["nbf"] = json!(now + 600);
        assert!(check(&c, &[]).await.is_err());
    }

    #[tokio::test]
    async fn refresh_needs_no_nonce() {
        let (jwks, http) = keys().await;
        let mut c = claims();
        c.as_object_mut().unwrap().remove("nonce");
        let mut e = expected(&[]);
        e.nonce = None;
        assert!(verify(&sign(&c), &jwks, &http, &e).await.is_ok());
    }

    #[tokio::test]
    async fn hmac_and_other_algorithms_than_the_keys_are_refused() {
        let (jwks, http) = keys().await;
        let hs = sign_with(&claims(), jsonwebtoken::Algorithm::HS256);
        assert!(verify(&hs, &jwks, &http, &expected(&[])).await.is_err());
        // The key declares RS256: a PS256 signature by the same key is refused.
        let ps = sign_with(&claims(), jsonwebtoken::Algorithm::PS256);
        assert!(verify(&ps, &jwks, &http, &expected(&[])).await.is_err());
    }

    #[tokio::test]
    async fn a_tampered_payload_is_refused() {
        let (jwks, http) = keys().await;
        let good = sign(&claims()).to_string();
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut c = claims();
        c["email"] = json!("mallory@example.com");
        parts[1] = b64(serde_json::to_string(&c).unwrap().as_bytes());
        let forged: IdToken = serde_json::from_value(Value::String(parts.join("."))).unwrap();
        assert!(verify(&forged, &jwks, &http, &expected(&[])).await.is_err());
    }
}
