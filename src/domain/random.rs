//! The one source of random tokens: OS randomness (`OsRng`), encoded as
//! unpadded base64url so a token fits a cookie, a URL or a Redis key as is.

use base64::Engine as _;
use rand::RngCore as _;

/// `n` bytes from the operating system's CSPRNG.
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// `n` random bytes as unpadded base64url (`4n/3` characters, rounded up).
/// 32 bytes (43 characters, 256 bits) for state, nonce, PKCE verifiers and
/// secrets.
pub fn token(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url_of_the_asked_length_and_differ() {
        let a = token(32);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, token(32));
        assert_ne!(bytes::<16>(), bytes::<16>());
    }
}
