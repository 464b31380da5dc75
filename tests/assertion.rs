//! The signed identity assertion from the outside: the real binary signs,
//! `jsonwebtoken` (a standard JOSE library) verifies against the keys
//! fetched from `/oauth2/jwks.json`; a tampered token is refused, a
//! client-sent copy of the header never reaches the upstream, every front
//! end carries it on an allow, and after a rotation the previous key still
//! verifies.

use crate::support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support::{Authgate, GateConfig, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::Value;

const HEADER: &str = "x-auth-request-jwt";

/// A P-256 key from fixed bytes: its private PEM (PKCS#8 when `pkcs8`,
/// else SEC1 `EC PRIVATE KEY`) and public PEM, written under `dir`.
fn key_files(dir: &Path, name: &str, seed: u8, pkcs8: bool) -> (PathBuf, PathBuf) {
    let key = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
    let private = if pkcs8 {
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
    } else {
        key.to_sec1_pem(LineEnding::LF).unwrap().to_string()
    };
    let public = key.public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let (k, p) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    std::fs::write(&k, private).unwrap();
    std::fs::write(&p, public).unwrap();
    (k, p)
}

struct Env {
    gate: Authgate,
    _echo: TestServer,
    http_check: std::net::SocketAddr,
    grpc_port: u16,
    client: reqwest::Client,
}

async fn start(idp: &TestServer, key: &Path, previous: &[&Path]) -> Env {
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.server = vec!["  trusted_proxies: [127.0.0.1/32]".into()];
    let (http_port, grpc_port) = cfg.with_ext_authz();
    let previous: Vec<String> = previous
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    cfg.authorization.extend([
        "assertion:".to_owned(),
        "  header: X-Auth-Request-Jwt".to_owned(),
        format!("  signing_key_file: {:?}", key.display().to_string()),
        format!("  previous_public_keys_files: [{}]", previous.join(", ")),
        "  issuer: https://auth.example.test".to_owned(),
    ]);
    let gate = Authgate::run(&cfg).await;
    Env {
        gate,
        _echo: echo,
        http_check: ([127, 0, 0, 1], http_port).into(),
        grpc_port,
        client: support::client(),
    }
}

impl Env {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.gate.port)
    }

    async fn jwks(&self) -> JwkSet {
        let resp = self
            .client
            .get(self.gate.url("/oauth2/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let cc = resp.headers()["cache-control"].to_str().unwrap().to_owned();
        assert!(cc.contains("max-age=300"), "{cc}");
        resp.json().await.unwrap()
    }

    /// The assertion headers the upstream received for `path`, with a
    /// forged copy sent by the client in an odd spelling.
    async fn upstream_assertions(&self, path: &str, bearer: &str) -> Vec<String> {
        let resp = self
            .client
            .get(self.gate.url(path))
            .header("authorization", format!("Bearer {bearer}"))
            .header("X_Auth_Request_Jwt", "forged.by.client")
            .header("X-AUTH-REQUEST-JWT", "forged.by.client")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let echo = support::echo_json(&resp.text().await.unwrap());
        let mut all = support::echoed_header(&echo, HEADER);
        all.extend(support::echoed_header(&echo, "x_auth_request_jwt"));
        all
    }
}

/// Verifies `token` with `jsonwebtoken` against `jwks` (the key its `kid`
/// names), for audience `aud`.
fn verify(token: &str, jwks: &JwkSet, aud: &str) -> Result<Value, jsonwebtoken::errors::Error> {
    let kid = jsonwebtoken::decode_header(token)?.kid.unwrap_or_default();
    let jwk = jwks
        .find(&kid)
        .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://auth.example.test"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    Ok(jsonwebtoken::decode::<Value>(token, &key, &v)?.claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_allow_carries_an_assertion_a_jose_library_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, _) = key_files(dir.path(), "a", 7, true);
    let idp = TestServer::idp().await;
    let env = start(&idp, &key_a, &[]).await;
    let redirect = format!("http://{}/oauth2/callback", env.host());
    let alice = support::id_token(&idp, &redirect, "alice").await;
    let jwks = env.jwks().await;
    assert_eq!(jwks.keys.len(), 1);

    // Proxy: exactly one, authgate's; the forged spellings are gone.
    let seen = env.upstream_assertions("/app/page", &alice).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let token = &seen[0];
    let claims = verify(token, &jwks, &env.host()).unwrap();
    assert_eq!(claims["sub"], "demo-user-alice");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["user"], "alice@example.com");
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "devs"]));
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 120);
    // Reused, not re-signed, for the next request.
    assert_eq!(
        &env.upstream_assertions("/app/other", &alice).await[0],
        token
    );

    // Tampering: another email in the payload, or another signature.
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["email"] = "mallory@example.com".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    assert!(verify(&forged, &jwks, &env.host()).is_err());
    let mut sig = b64.decode(parts[2]).unwrap();
    sig[5] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], b64.encode(sig));
    assert!(verify(&forged, &jwks, &env.host()).is_err());
    // Another audience is refused too.
    assert!(verify(token, &jwks, "other.example.com").is_err());

    // A skipped route carries none, and the client's copy is stripped.
    let resp = env
        .client
        .get(env.gate.url("/public/x"))
        .header("X-Auth-Request-Jwt", "forged.by.client")
        .send()
        .await
        .unwrap();
    let echo = support::echo_json(&resp.text().await.unwrap());
    assert!(support::echoed_header(&echo, HEADER).is_empty());

    // ext_authz HTTP: on the 200, once; a skip lists it for removal.
    let auth = format!("Bearer {alice}");
    let host = env.host();
    let (status, h) = support::raw_get(
        env.http_check,
        "/app/page",
        &[("host", &host), ("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200);
    let values: Vec<_> = h.get_all(HEADER).iter().collect();
    assert_eq!(values.len(), 1);
    verify(values[0].to_str().unwrap(), &jwks, &host).unwrap();
    let (status, h) = support::raw_get(env.http_check, "/public/x", &[("host", &host)]).await;
    assert_eq!(status, 200);
    assert!(h.get(HEADER).is_none());
    let removed = h["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(removed.contains(HEADER), "{removed}");

    // gRPC: in ok_response.headers with OVERWRITE_IF_EXISTS_OR_ADD.
    let mut grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{}", env.grpc_port))
        .await
        .unwrap();
    let mut headers = HashMap::new();
    headers.insert("authorization".to_owned(), auth.clone());
    headers.insert(HEADER.to_owned(), "forged.by.client".to_owned());
    let req = support::check_request("GET", host.clone(), "/app/page", headers);
    let resp = grpc.check(req).await.unwrap().into_inner();
    let Some(HttpResponse::OkResponse(ok)) = resp.http_response else {
        panic!("not allowed: {resp:?}");
    };
    let set: Vec<_> = ok
        .headers
        .iter()
        .filter(|o| o.header.as_ref().unwrap().key.eq_ignore_ascii_case(HEADER))
        .collect();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].append_action, 2, "OVERWRITE_IF_EXISTS_OR_ADD");
    verify(&set[0].header.as_ref().unwrap().value, &jwks, &host).unwrap();

    // /oauth2/auth: on the 202, for the original host.
    let resp = env
        .client
        .get(env.gate.url("/oauth2/auth"))
        .header("authorization", &auth)
        .header("x-forwarded-host", "grafana.example.com")
        .header("x-forwarded-uri", "/d/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let t = resp.headers()[HEADER].to_str().unwrap();
    assert_eq!(
        verify(t, &jwks, "grafana.example.com").unwrap()["email"],
        "alice@example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rotation_the_previous_key_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key_a, pub_a) = key_files(dir.path(), "a", 7, true);
    let (key_b, _) = key_files(dir.path(), "b", 9, false);
    let idp = TestServer::idp().await;
    let old = start(&idp, &key_a, &[]).await;
    let redirect = format!("http://{}/oauth2/callback", old.host());
    let alice = support::id_token(&idp, &redirect, "alice").await;
    let minted_before = old.upstream_assertions("/app", &alice).await.remove(0);
    let old_kid = old.jwks().await.keys[0].common.key_id.clone().unwrap();

    // The rotated deployment: key B signs, A's public key is still published.
    let new = start(&idp, &key_b, &[&pub_a]).await;
    let jwks = new.jwks().await;
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(kids[1], old_kid, "the previous key keeps its kid");
    assert_ne!(kids[0], old_kid);
    // An assertion minted before the rotation still verifies (the old
    // process's audience), and the new one is signed with B.
    verify(&minted_before, &jwks, &old.host()).unwrap();
    let minted_after = new.upstream_assertions("/app", &alice).await.remove(0);
    let header = jsonwebtoken::decode_header(&minted_after).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kids[0].as_str()));
    verify(&minted_after, &jwks, &new.host()).unwrap();
    // Without A published, the old assertion no longer verifies.
    let only_b = JwkSet {
        keys: vec![jwks.keys[0].clone()],
    };
    assert!(verify(&minted_before, &only_b, &old.host()).is_err());
}

#[test]
fn check_rejects_a_bad_assertion_section() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("nokey.pem");
    std::fs::write(
        &not_a_key,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let yaml = format!(
        "provider:\n  issuer_url: http://127.0.0.1:9/\n  client_id: c\n  client_secret: s\n\
cookie:\n  secret: \"0123456789abcdef0123456789abcdef\"\nupstreams:\n  - path: /\n    url: http://127.0.0.1:9\n\
assertion:\n  header: X-Auth-Request-Jwt\n  signing_key_file: {:?}\n  previous_public_keys_files: [\"/nonexistent.pem\"]\n  lifetime: 1s\n",
        not_a_key.display().to_string()
    );
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(support::bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for key in [
        "assertion.signing_key_file: ",
        "assertion.previous_public_keys_files[0]: ",
        "assertion.lifetime: ",
    ] {
        assert!(text.contains(key), "{key} missing:\n{text}");
    }
}
