//! The session codec: AES-256-GCM over a key derived from `cookie.secret`
//! (and, to open only, from each of `cookie.previous_secrets`).
//!
//! Wire format (then base64url without padding):
//! `version (1 byte) || nonce (12 random bytes) || ciphertext || tag (16 bytes)`.
//!
//! Each format version has its own HKDF-derived key, so the clear-text version
//! byte is authenticated implicitly: flipping it selects another key and the
//! tag check fails. The caller passes the cookie name as AAD, so a value sealed
//! for the CSRF cookie cannot be replayed as a session (or the reverse).
//!
//! Everything `open` rejects is "no credentials" for the caller, never a 500.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

/// Format 1: the plaintext as given; expiry is the caller's business.
const VERSION_PLAIN: u8 = 1;
/// Format 2: an 8-byte big-endian expiry (Unix seconds) precedes the plaintext.
const VERSION_EXPIRING: u8 = 2;

const HKDF_SALT: &[u8] = b"authgate session codec salt v1";
const INFO_PLAIN: &[u8] = b"authgate session aes-256-gcm v1";
const INFO_EXPIRING: &[u8] = b"authgate session aes-256-gcm expiring v2";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;
const EXPIRY_LEN: usize = 8;

/// Why a sealed value was refused. Callers treat every variant as "anonymous".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The value has a non-ASCII byte (never produced by `seal`).
    #[error("sealed value is not ASCII")]
    NotAscii,
    /// The value is not base64url without padding (RFC 4648 §5).
    #[error("sealed value is not base64url without padding")]
    Base64,
    /// Shorter than a version byte, a nonce and a GCM tag.
    #[error("sealed value is too short")]
    TooShort,
    /// The version byte names no format this build opens (or another
    /// method's: `open` does not take `seal_expiring` values).
    #[error("unsupported sealed value version {0}")]
    UnknownVersion(u8),
    /// The GCM tag does not match: tampered, another key, or another `aad`
    /// (cookie name).
    #[error("sealed value failed authentication")]
    Authentication,
    /// An expiring value opened at or after its expiry second.
    #[error("sealed value has expired")]
    Expired,
}

// === impl SessionCodec ===

/// Seals and opens session (and CSRF) values. Build once at start-up and
/// share it behind an `Arc`: the AES key schedules are computed in `new`.
pub struct SessionCodec {
    plain: Aes256Gcm,
    expiring: Aes256Gcm,
    /// Keys of `cookie.previous_secrets`, tried in order after the current
    /// ones: they open, never seal.
    previous: Vec<(Aes256Gcm, Aes256Gcm)>,
}

impl std::fmt::Debug for SessionCodec {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCodec { .. }")
    }
}

impl SessionCodec {
    /// Derives the AES-256 keys from the cookie secret (16, 24 or 32 bytes,
    /// already validated by config) with HKDF-SHA256. Start-up only.
    pub fn new(secret: &[u8]) -> SessionCodec {
        Self::with_previous(secret, &[])
    }

    /// Like [`SessionCodec::new`], also opening values sealed with any of
    /// `previous` (secret rotation: `cookie.previous_secrets`). Start-up and
    /// reload only.
    pub fn with_previous(secret: &[u8], previous: &[&[u8]]) -> SessionCodec {
        let (plain, expiring) = derive_pair(secret);
        SessionCodec {
            plain,
            expiring,
            previous: previous.iter().map(|s| derive_pair(s)).collect(),
        }
    }

    /// Whether `sealed` opens with the current secret. False for a value
    /// only a previous secret opens (re-seal it) and for foreign values.
    /// Always true when no previous secret is configured, at no cost.
    pub fn is_current(&self, aad: &[u8], sealed: impl AsRef<[u8]>) -> bool {
        let sealed = sealed.as_ref();
        if self.previous.is_empty() {
            return true;
        }
        open_with(&self.plain, VERSION_PLAIN, aad, sealed, 0).is_ok()
            || open_with(&self.expiring, VERSION_EXPIRING, aad, sealed, EXPIRY_LEN).is_ok()
    }

    /// Encrypts `plaintext` bound to `aad` (the cookie name). The result is
    /// cookie-safe (base64url, no padding).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        seal_with(&self.plain, VERSION_PLAIN, aad, &[], plaintext)
    }

    /// Opens a value made by [`SessionCodec::seal`] with the same `aad`.
    ///
    /// # Errors
    /// Any [`CodecError`] but `Expired`: the value is not one this codec
    /// sealed for `aad`.
    pub fn open(&self, aad: &[u8], sealed: impl AsRef<[u8]>) -> Result<Vec<u8>, CodecError> {
        let sealed = sealed.as_ref();
        let current = open_with(&self.plain, VERSION_PLAIN, aad, sealed, 0);
        match current {
            Err(CodecError::Authentication) => self
                .previous
                .iter()
                .find_map(|(plain, _)| open_with(plain, VERSION_PLAIN, aad, sealed, 0).ok())
                .ok_or(CodecError::Authentication),
            other => other,
        }
    }

    /// Like [`SessionCodec::seal`], with `expires_at_unix` (seconds) inside the
    /// authenticated payload so it cannot be extended by the client.
    pub fn seal_expiring(&self, aad: &[u8], plaintext: &[u8], expires_at_unix: u64) -> String {
        let expiry = expires_at_unix.to_be_bytes();
        seal_with(&self.expiring, VERSION_EXPIRING, aad, &expiry, plaintext)
    }

    /// Opens a value made by [`SessionCodec::seal_expiring`]; a value is
    /// expired from its expiry second on (`now_unix >= expires_at_unix`).
    ///
    /// # Errors
    /// [`CodecError::Expired`] once expired; any other [`CodecError`] when
    /// the value is not one this codec sealed for `aad`.
    pub fn open_expiring(
        &self,
        aad: &[u8],
        sealed: impl AsRef<[u8]>,
        now_unix: u64,
    ) -> Result<Vec<u8>, CodecError> {
        let sealed = sealed.as_ref();
        let mut buf = match open_with(&self.expiring, VERSION_EXPIRING, aad, sealed, EXPIRY_LEN) {
            Err(CodecError::Authentication) => self
                .previous
                .iter()
                .find_map(|(_, exp)| open_with(exp, VERSION_EXPIRING, aad, sealed, EXPIRY_LEN).ok())
                .ok_or(CodecError::Authentication)?,
            other => other?,
        };
        let mut expiry = [0u8; EXPIRY_LEN];
        expiry.copy_from_slice(&buf[..EXPIRY_LEN]);
        if now_unix >= u64::from_be_bytes(expiry) {
            return Err(CodecError::Expired);
        }
        buf.drain(..EXPIRY_LEN);
        Ok(buf)
    }
}

/// The plain and expiring ciphers of one secret.
fn derive_pair(secret: &[u8]) -> (Aes256Gcm, Aes256Gcm) {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), secret);
    (
        derive_cipher(&hkdf, INFO_PLAIN),
        derive_cipher(&hkdf, INFO_EXPIRING),
    )
}

// Start-up only (`SessionCodec::new`), never on a request.
#[allow(clippy::expect_used)]
fn derive_cipher(hkdf: &Hkdf<Sha256>, info: &[u8]) -> Aes256Gcm {
    let mut okm = [0u8; 32];
    // HKDF-SHA256 only fails above 255 * 32 bytes of output; 32 cannot fail.
    hkdf.expand(info, &mut okm)
        .expect("32 bytes is within HKDF-SHA256's output limit");
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(okm));
    okm.fill(0);
    cipher
}

/// One allocation: the buffer holds the base64 output at the front and the
/// raw sealed bytes behind it; it becomes the returned `String`.
fn seal_with(
    cipher: &Aes256Gcm,
    version: u8,
    aad: &[u8],
    prefix: &[u8],
    plaintext: &[u8],
) -> String {
    let raw_len = HEADER_LEN + prefix.len() + plaintext.len() + TAG_LEN;
    let enc_len = base64::encoded_len(raw_len, false).unwrap_or(0);
    let mut buf = vec![0u8; enc_len + raw_len];
    let (out, raw) = buf.split_at_mut(enc_len);

    raw[0] = version;
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    raw[1..HEADER_LEN].copy_from_slice(&nonce);
    let body_end = raw_len - TAG_LEN;
    raw[HEADER_LEN..HEADER_LEN + prefix.len()].copy_from_slice(prefix);
    raw[HEADER_LEN + prefix.len()..body_end].copy_from_slice(plaintext);

    // Encryption only fails for plaintexts above 64 GiB, which no cookie reaches.
    let tag = match cipher.encrypt_in_place_detached(
        &Nonce::from(nonce),
        aad,
        &mut raw[HEADER_LEN..body_end],
    ) {
        Ok(tag) => tag,
        Err(_) => return String::new(),
    };
    raw[body_end..].copy_from_slice(&tag);

    let written = URL_SAFE_NO_PAD.encode_slice(&*raw, out).unwrap_or(0);
    buf.truncate(written);
    // base64url output is ASCII, so this never fails.
    String::from_utf8(buf).unwrap_or_default()
}

/// One allocation: the decoded buffer is decrypted in place and returned
/// without its header and tag. `min_plain` is the format's fixed prefix.
fn open_with(
    cipher: &Aes256Gcm,
    version: u8,
    aad: &[u8],
    sealed: &[u8],
    min_plain: usize,
) -> Result<Vec<u8>, CodecError> {
    if !sealed.is_ascii() {
        return Err(CodecError::NotAscii);
    }
    let min_raw = HEADER_LEN + min_plain + TAG_LEN;
    // Cheap length check before decoding anything.
    if sealed.len() < base64::encoded_len(min_raw, false).unwrap_or(usize::MAX) {
        return Err(CodecError::TooShort);
    }
    let mut buf = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| CodecError::Base64)?;
    if buf.len() < min_raw {
        return Err(CodecError::TooShort);
    }
    if buf[0] != version {
        return Err(CodecError::UnknownVersion(buf[0]));
    }
    let len = buf.len();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&buf[1..HEADER_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&buf[len - TAG_LEN..]);
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(nonce),
            aad,
            &mut buf[HEADER_LEN..len - TAG_LEN],
            &Tag::from(tag),
        )
        .map_err(|_| CodecError::Authentication)?;
    buf.truncate(len - TAG_LEN);
    buf.drain(..HEADER_LEN);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const AAD: &[u8] = b"_oauth2_proxy";

    fn codec() -> SessionCodec {
        SessionCodec::new(SECRET)
    }

    #[test]
    fn previous_secrets_open_but_never_seal() {
        let old = SessionCodec::new(b"an-older-secret-0123456789abcdef");
        let other = SessionCodec::new(b"a-foreign-secret-123456789abcdef");
        let rotated = SessionCodec::with_previous(
            SECRET,
            &[
                b"a-foreign-secret-123456789abcdef",
                b"an-older-secret-0123456789abcdef",
            ],
        );
        let sealed_old = old.seal(AAD, b"alice");
        assert_eq!(rotated.open(AAD, &sealed_old).unwrap(), b"alice");
        assert!(!rotated.is_current(AAD, &sealed_old), "needs a re-seal");
        let expiring_old = old.seal_expiring(AAD, b"flow", 100);
        assert_eq!(
            rotated.open_expiring(AAD, &expiring_old, 99).unwrap(),
            b"flow"
        );
        assert_eq!(
            rotated.open_expiring(AAD, &expiring_old, 100),
            Err(CodecError::Expired)
        );
        // New values use the current secret: the old codec cannot open them.
        let fresh = rotated.seal(AAD, b"alice");
        assert!(rotated.is_current(AAD, &fresh));
        assert_eq!(codec().open(AAD, &fresh).unwrap(), b"alice");
        assert_eq!(old.open(AAD, &fresh), Err(CodecError::Authentication));
        // Still bound to the cookie name, and a secret never listed fails.
        assert!(rotated.open(b"other", &sealed_old).is_err());
        let stranger = SessionCodec::new(b"never-configured-0123456789abcde");
        assert_eq!(
            rotated.open(AAD, stranger.seal(AAD, b"x")),
            Err(CodecError::Authentication)
        );
        // Without previous secrets every value counts as current (no work).
        assert!(codec().is_current(AAD, &sealed_old));
        let _ = other;
    }

    #[test]
    fn codec_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SessionCodec>();
    }

    #[test]
    fn round_trip_returns_the_plaintext() {
        let c = codec();
        for len in [0usize, 1, 15, 16, 17, 100, 4096, 10_000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let sealed = c.seal(AAD, &plain);
            assert_eq!(c.open(AAD, &sealed).unwrap(), plain, "len {len}");
        }
    }

    #[test]
    fn sealed_value_is_cookie_safe_base64url() {
        let sealed = codec().seal(AAD, b"hello world, with; separators=");
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            sealed.len(),
            base64::encoded_len(1 + 12 + 30 + 16, false).unwrap()
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let c = codec();
        assert_ne!(c.seal(AAD, b"same"), c.seal(AAD, b"same"));
    }

    #[test]
    fn debug_does_not_print_key_material() {
        assert_eq!(format!("{:?}", codec()), "SessionCodec { .. }");
    }

    #[test]
    fn every_flipped_bit_is_rejected_without_panic() {
        let c = codec();
        let sealed = c.seal(AAD, b"session payload");
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..raw.len() {
            for bit in 0..8 {
                let mut t = raw.clone();
                t[i] ^= 1 << bit;
                let tampered = URL_SAFE_NO_PAD.encode(&t);
                assert!(c.open(AAD, &tampered).is_err(), "byte {i} bit {bit}");
                assert!(c.open_expiring(AAD, &tampered, 0).is_err());
            }
        }
    }

    #[test]
    fn every_changed_character_is_rejected_without_panic() {
        let c = codec();
        let sealed = c.seal(AAD, b"session payload");
        for i in 0..sealed.len() {
            for replacement in ['A', 'z', '0', '-', '_', '=', '.', ' ', '+', '/'] {
                let mut t = sealed.clone().into_bytes();
                if t[i] == replacement as u8 {
                    continue;
                }
                t[i] = replacement as u8;
                let t = String::from_utf8(t).unwrap();
                assert!(c.open(AAD, &t).is_err(), "pos {i} -> {replacement}");
            }
        }
    }

    #[test]
    fn flipped_version_byte_is_rejected() {
        let c = codec();
        let mut raw = URL_SAFE_NO_PAD
            .decode(c.seal_expiring(AAD, b"x", u64::MAX))
            .unwrap();
        raw[0] = VERSION_PLAIN;
        let relabelled = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(c.open(AAD, &relabelled), Err(CodecError::Authentication));
        raw[0] = 9;
        let unknown = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(c.open(AAD, &unknown), Err(CodecError::UnknownVersion(9)));
    }

    #[test]
    fn other_key_is_rejected() {
        let sealed = codec().seal(AAD, b"payload");
        let other = SessionCodec::new(b"fedcba9876543210fedcba9876543210");
        assert_eq!(other.open(AAD, &sealed), Err(CodecError::Authentication));
        let short_key = SessionCodec::new(b"0123456789abcdef");
        assert_eq!(
            short_key.open(AAD, &sealed),
            Err(CodecError::Authentication)
        );
    }

    #[test]
    fn csrf_value_cannot_be_replayed_as_session() {
        let c = codec();
        let sealed = c.seal(b"_oauth2_proxy_csrf", b"payload");
        assert_eq!(c.open(AAD, &sealed), Err(CodecError::Authentication));
        assert!(c.open(b"_oauth2_proxy_csrf", &sealed).is_ok());
    }

    #[test]
    fn truncated_values_are_rejected() {
        let c = codec();
        let sealed = c.seal(AAD, b"payload");
        for cut in 0..sealed.len() {
            assert!(c.open(AAD, &sealed[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(c.open(AAD, ""), Err(CodecError::TooShort));
    }

    #[test]
    fn empty_plaintext_round_trips_and_empty_input_is_rejected() {
        let c = codec();
        assert_eq!(c.open(AAD, c.seal(AAD, b"")).unwrap(), Vec::<u8>::new());
        assert!(c.open_expiring(AAD, "", 0).is_err());
    }

    #[test]
    fn non_ascii_and_non_base64_are_rejected() {
        let c = codec();
        let sealed = c.seal(AAD, b"payload");
        let non_ascii = format!("{}é", &sealed[..sealed.len() - 1]);
        assert_eq!(c.open(AAD, &non_ascii), Err(CodecError::NotAscii));
        let padded = format!("{sealed}==");
        assert!(c.open(AAD, &padded).is_err());
        let junk = "!".repeat(sealed.len());
        assert_eq!(c.open(AAD, &junk), Err(CodecError::Base64));
    }

    #[test]
    fn expiring_round_trip_before_expiry() {
        let c = codec();
        let sealed = c.seal_expiring(AAD, b"payload", 1_000);
        assert_eq!(c.open_expiring(AAD, &sealed, 999).unwrap(), b"payload");
    }

    #[test]
    fn expired_value_is_rejected() {
        let c = codec();
        let sealed = c.seal_expiring(AAD, b"payload", 1_000);
        assert_eq!(
            c.open_expiring(AAD, &sealed, 1_000),
            Err(CodecError::Expired)
        );
        assert_eq!(
            c.open_expiring(AAD, &sealed, 5_000),
            Err(CodecError::Expired)
        );
    }

    #[test]
    fn plain_and_expiring_formats_do_not_mix() {
        let c = codec();
        let plain = c.seal(AAD, b"0123456789");
        assert_eq!(
            c.open_expiring(AAD, &plain, 0),
            Err(CodecError::UnknownVersion(VERSION_PLAIN))
        );
        let expiring = c.seal_expiring(AAD, b"payload", u64::MAX);
        assert_eq!(
            c.open(AAD, &expiring),
            Err(CodecError::UnknownVersion(VERSION_EXPIRING))
        );
    }

    #[test]
    fn expiring_value_with_wrong_aad_is_rejected() {
        let c = codec();
        let sealed = c.seal_expiring(AAD, b"payload", u64::MAX);
        assert_eq!(
            c.open_expiring(b"other", &sealed, 0),
            Err(CodecError::Authentication)
        );
    }
}
