//! Writes a static OpenID provider (discovery document and JWKS with a fresh
//! RS256 key) into a directory for nginx to serve, and prints a bearer JWT
//! signed with that key, so `benches/load.sh` measures the bearer path
//! against a real JWKS fetch. Development tool only.
//!
//! `cargo run --release --example mint_bearer -- <dir> <issuer> <audience>`

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        anyhow::bail!("usage: mint_bearer <dir> <issuer> <audience>");
    }
    let (dir, issuer, aud) = (
        std::path::Path::new(&args[1]),
        args[2].trim_end_matches('/'),
        &args[3],
    );
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)?;
    let kid = "bench-1";
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    }]});
    let discovery = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    std::fs::create_dir_all(dir.join(".well-known"))?;
    std::fs::write(dir.join("jwks"), serde_json::to_vec(&jwks)?)?;
    std::fs::write(
        dir.join(".well-known/openid-configuration"),
        serde_json::to_vec(&discovery)?,
    )?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = json!({
        "iss": issuer, "aud": aud, "sub": "alice", "iat": now, "exp": now + 3600,
        "email": "alice@example.com", "email_verified": true,
        "preferred_username": "alice", "groups": ["admins", "devs"],
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let der = key.to_pkcs1_der()?;
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der.as_bytes()))?;
    println!("{token}");
    Ok(())
}
