//! Signing-key rotation right after authgate fetched the keys (issue 9,
//! fault 5), against the real binary: an ID token authgate just received
//! over the back channel with an unknown `kid` refetches the JWKS at once
//! (one fetch for every login waiting on it), while bearer tokens, which
//! clients choose, stay behind the refetch rate limit.

use crate::support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::support::{
    client, demo_idp, echo_json, free_port, get, login, metric, Authgate, GateConfig, Jar,
    TestServer,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tokio::net::TcpListener;

/// authgate refetches keys for bearer tokens at most this often
/// (`oidc::jwks::REFETCH_MIN_INTERVAL`); the rotation must happen inside it.
const RATE_LIMIT: Duration = Duration::from_secs(10);

async fn jwks_fetches(gate: &Authgate) -> f64 {
    metric(
        &gate.metrics().await,
        r#"authgate_idp_requests_total{endpoint="jwks",outcome="ok"}"#,
    )
    .unwrap_or(0.0)
}

/// The demo IdP on a fresh port and authgate in front of an echo upstream,
/// discovered (so it fetched the JWKS just now).
async fn setup() -> (
    Authgate,
    authgate::demo::idp::DemoIdp,
    TestServer,
    TestServer,
) {
    let upstream = TestServer::echo("app").await;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let idp = demo_idp(listener.local_addr().unwrap().port());
    let served = TestServer::serve_idp(listener, &idp);
    let cfg = GateConfig::new(served.port(), &[("/", upstream.port())]);
    let gate = Authgate::run(&cfg).await;
    (gate, idp, served, upstream)
}

#[tokio::test]
async fn logins_right_after_the_idp_rotates_its_key_succeed_with_one_refetch() {
    let next_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let (gate, idp, _idp, _upstream) = setup().await;
    let fetched = Instant::now();
    let before = jwks_fetches(&gate).await;
    idp.rotate_key(next_key).unwrap();

    let c = client();
    let logins = (0..4).map(|i| {
        let c = c.clone();
        let page = gate.url(&format!("/app/{i}"));
        async move {
            let mut jar = Jar::default();
            let back = login(&c, &mut jar, &page, "alice").await;
            (back.status(), jar, page)
        }
    });
    let done = futures::future::join_all(logins).await;
    assert!(
        fetched.elapsed() < RATE_LIMIT,
        "the logins must finish inside the refetch rate limit to test anything"
    );
    for (status, mut jar, page) in done {
        assert_eq!(
            status,
            302,
            "callback after the rotation; stderr:\n{}",
            gate.stderr()
        );
        let r = get(&c, &mut jar, &page, "text/html").await;
        assert_eq!(r.status(), 200);
        let echo = echo_json(&r.text().await.unwrap());
        assert_eq!(
            support::echoed_header(&echo, "x-auth-request-user"),
            ["alice@example.com"]
        );
    }
    assert_eq!(
        jwks_fetches(&gate).await - before,
        1.0,
        "one refetch for all the logins that met the new kid"
    );
}

/// A JWT of `issuer` naming `kid`, with a signature that matches nothing.
fn forged(issuer: &str, kid: &str) -> String {
    let enc = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let header = enc(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}));
    let claims = enc(serde_json::json!({
        "iss": issuer, "aud": support::CLIENT_ID, "sub": "mallory",
        "exp": 4_000_000_000u64, "email": "mallory@example.com"
    }));
    format!(
        "{header}.{claims}.{}",
        URL_SAFE_NO_PAD.encode(b"not a signature")
    )
}

#[tokio::test]
async fn bearer_tokens_with_unknown_kids_stay_rate_limited() {
    let (gate, _idp, idp_server, _upstream) = setup().await;
    let issuer = format!("http://127.0.0.1:{}", idp_server.port());
    let before = jwks_fetches(&gate).await;
    let c = client();
    for i in 0..20 {
        let r = c
            .get(gate.url("/api/x"))
            .header("accept", "application/json")
            .bearer_auth(forged(&issuer, &format!("forged-{i}-{}", free_port())))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        jwks_fetches(&gate).await - before,
        0.0,
        "forged kids right after discovery fetch nothing"
    );
}
