//! The provider's RS256 signing keys: signing tokens, verifying its own, and
//! publishing them as the JWKS (RFC 7517); [`DemoIdp::rotate_key`] lets a
//! test rotate the key the way real providers do.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation};
use parking_lot::RwLock;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};

use super::pages::json_response;
use super::token::TokenError;
use super::{DemoIdp, IdpError};

/// One RSA key with its `kid` and public parts.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// base64url modulus and exponent for the JWKS.
    n: String,
    e: String,
}

impl SigningKey {
    fn new(key: &RsaPrivateKey) -> Result<SigningKey, IdpError> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| IdpError::KeyEncoding(e.to_string()))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        Ok(SigningKey {
            // A fresh `kid` per key, also for the same key material: a
            // rotation is always visible to relying parties as a new `kid`.
            kid: crate::domain::random::token(12),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    }
}

/// The signing key and, after a rotation, the one before it (still
/// published and accepted, as providers keep an old key for a while).
pub(super) struct Signer {
    /// Newest first; at most two.
    keys: RwLock<Vec<Arc<SigningKey>>>,
}

impl Signer {
    pub(super) fn new(key: &RsaPrivateKey) -> Result<Signer, IdpError> {
        Ok(Signer {
            keys: RwLock::new(vec![Arc::new(SigningKey::new(key)?)]),
        })
    }

    fn current(&self) -> Arc<SigningKey> {
        // `new` puts one key in and `rotate` never empties the list.
        self.keys.read()[0].clone()
    }

    /// A compact RS256 JWS of `claims` with header `typ` (RFC 7519 5.1),
    /// signed with the newest key.
    pub(super) fn sign(&self, typ: &str, claims: &Value) -> Result<String, TokenError> {
        let key = self.current();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|_| TokenError::ServerError)
    }

    /// Verifies one of this provider's own tokens (userinfo access tokens,
    /// logout hints) with the published key its `kid` names.
    pub(super) fn decode(
        &self,
        token: &str,
        validation: &Validation,
    ) -> jsonwebtoken::errors::Result<TokenData<Value>> {
        let kid = jsonwebtoken::decode_header(token)?.kid;
        let key = self
            .keys
            .read()
            .iter()
            .find(|k| Some(&k.kid) == kid.as_ref())
            .cloned()
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidSignature)?;
        jsonwebtoken::decode::<Value>(token, &key.decoding, validation)
    }

    fn rotate(&self, key: &RsaPrivateKey) -> Result<(), IdpError> {
        let next = Arc::new(SigningKey::new(key)?);
        let mut keys = self.keys.write();
        keys.insert(0, next);
        keys.truncate(2);
        Ok(())
    }
}

impl DemoIdp {
    /// `GET /jwks`: the public signing keys, newest first.
    pub(super) fn jwks(&self) -> Response<Vec<u8>> {
        let keys: Vec<Value> = self
            .inner
            .signer
            .keys
            .read()
            .iter()
            .map(|k| json!({"kty": "RSA", "kid": k.kid, "use": "sig", "alg": "RS256", "n": k.n, "e": k.e}))
            .collect();
        json_response(StatusCode::OK, &json!({ "keys": keys }))
    }

    /// Rotates the signing key, for tests of relying parties: tokens issued
    /// from now on are signed with `key` under a new `kid`; the previous key
    /// stays published (and accepted here) beside it, the one before that is
    /// dropped. Affects clones too.
    ///
    /// Errors with [`IdpError::KeyEncoding`] if `key` cannot be DER-encoded.
    pub fn rotate_key(&self, key: RsaPrivateKey) -> Result<(), IdpError> {
        self.inner.signer.rotate(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RsaPrivateKey {
        use rsa::pkcs8::DecodePrivateKey as _;
        // One fixed key is enough: every rotation gets a new `kid`.
        RsaPrivateKey::from_pkcs8_pem(include_str!("../../../tests/support/test_key.pem")).unwrap()
    }

    #[test]
    fn a_rotation_signs_with_a_new_kid_and_keeps_the_old_key_published() {
        let signer = Signer::new(&key()).unwrap();
        let old = signer.sign("JWT", &json!({"sub": "a"})).unwrap();
        signer.rotate(&key()).unwrap();
        let new = signer.sign("JWT", &json!({"sub": "a"})).unwrap();
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        assert_ne!(kid(&old), kid(&new));
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        v.required_spec_claims.clear();
        v.validate_exp = false;
        assert!(signer.decode(&old, &v).is_ok());
        assert!(signer.decode(&new, &v).is_ok());
        signer.rotate(&key()).unwrap();
        assert!(signer.decode(&old, &v).is_err(), "two rotations drop it");
        assert_eq!(signer.keys.read().len(), 2);
    }
}
