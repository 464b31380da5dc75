//! `assertion`: the signed identity assertion (issue 12): the header name,
//! the P-256 signing key (SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`
//! PEM, read here so `check` and a reload see a bad key), the previous
//! public keys still published for rotation, issuer, audience, lifetime.

use std::time::Duration;

use p256::pkcs8::DecodePublicKey;

use super::Validator;
use crate::config::file::AssertionFile;
use crate::config::model::Assertion;
use crate::domain::Secret;

/// Below this an assertion would expire before a slow upstream reads it,
/// and the per-session cache could not save a signature.
const MIN_LIFETIME: Duration = Duration::from_secs(10);

impl Validator {
    /// Outer `None`: invalid (recorded); `Some(None)`: off (no header).
    pub(super) fn assertion(&mut self, a: &AssertionFile) -> Option<Option<Assertion>> {
        let header = a.header.trim();
        if header.is_empty() {
            return Some(None);
        }
        let before = self.problems.len();
        let name = match http::HeaderName::from_bytes(header.as_bytes()) {
            Ok(n) => Some(n),
            Err(_) => {
                self.problem("assertion.header", "must be an HTTP header name");
                None
            }
        };
        if name.as_ref().is_some_and(|n| {
            matches!(
                n.as_str(),
                "host" | "cookie" | "authorization" | "content-length" | "transfer-encoding"
            )
        }) {
            self.problem(
                "assertion.header",
                "must not be a header the request needs (host, cookie, authorization, ...)",
            );
        }
        let key = self.signing_key("assertion.signing_key_file", &a.signing_key_file);
        let mut previous = Vec::new();
        for (i, file) in a.previous_public_keys_files.iter().enumerate() {
            let k = format!("assertion.previous_public_keys_files[{i}]");
            if let Some(pk) = self.public_key(&k, file) {
                previous.push(pk);
            }
        }
        let lifetime = self.duration("assertion.lifetime", &a.lifetime.0);
        if lifetime.is_some_and(|l| l < MIN_LIFETIME) {
            self.problem("assertion.lifetime", "must be at least 10s");
        }
        let issuer = match a.issuer.trim() {
            "" => "authgate".to_owned(),
            s => s.to_owned(),
        };
        let audience = Some(a.audience.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if self.problems.len() > before {
            return None;
        }
        Some(Some(Assertion {
            header: name?,
            signing_key: Secret::new(key?),
            previous_public_keys: previous,
            issuer,
            audience,
            lifetime: lifetime?,
        }))
    }

    /// A P-256 private key from a PEM file (SEC1 or PKCS#8).
    fn signing_key(&mut self, key: &str, path: &str) -> Option<p256::SecretKey> {
        let path = self.required_file(key, path)?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        // The error says only which format failed: never the key's bytes.
        p256::SecretKey::from_pem(text.trim())
            .map_err(|_| {
                self.problem(
                    key,
                    format!(
                        "{} is not a PEM P-256 private key (EC PRIVATE KEY or PRIVATE KEY)",
                        path.display()
                    ),
                )
            })
            .ok()
    }

    /// A P-256 public key from a PEM file (`PUBLIC KEY`, SubjectPublicKeyInfo).
    fn public_key(&mut self, key: &str, path: &str) -> Option<p256::PublicKey> {
        let path = self.required_file(key, path)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.problem(key, format!("cannot read {}: {e}", path.display())))
            .ok()?;
        p256::PublicKey::from_public_key_pem(text.trim())
            .map_err(|_| {
                self.problem(
                    key,
                    format!(
                        "{} is not a PEM P-256 public key (PUBLIC KEY)",
                        path.display()
                    ),
                )
            })
            .ok()
    }
}
