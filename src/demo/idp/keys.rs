//! The provider's RS256 signing key: signing tokens, verifying its own, and
//! publishing it as the JWKS (RFC 7517).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

use super::pages::json_response;
use super::token::TokenError;
use super::{DemoIdp, IdpError};

/// The one signing key, with its `kid` and public parts.
pub(super) struct Signer {
    kid: String,
    encoding: EncodingKey,
    /// Verifies this provider's own tokens (userinfo, logout hints).
    pub(super) decoding: DecodingKey,
    /// base64url modulus and exponent for the JWKS.
    n: String,
    e: String,
}

impl Signer {
    pub(super) fn new(key: &RsaPrivateKey) -> Result<Signer, IdpError> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| IdpError::KeyEncoding(e.to_string()))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        Ok(Signer {
            kid: crate::domain::random::token(12),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    }

    /// A compact RS256 JWS of `claims` with header `typ` (RFC 7519 5.1).
    pub(super) fn sign(&self, typ: &str, claims: &Value) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| TokenError::ServerError)
    }
}

impl DemoIdp {
    /// `GET /jwks`: the public signing key.
    pub(super) fn jwks(&self) -> Response<Vec<u8>> {
        let s = &self.inner.signer;
        json_response(
            StatusCode::OK,
            &json!({"keys": [{
                "kty": "RSA", "kid": s.kid, "use": "sig", "alg": "RS256", "n": s.n, "e": s.e
            }]}),
        )
    }
}
