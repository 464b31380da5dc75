//! Tests of the userinfo endpoint.

use super::*;

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

#[test]
fn userinfo_answers_access_tokens_only() {
    let idp = idp();
    let code = code_for(&idp, "bob");
    let t = body_json(&exchange(&idp, &code, VERIFIER));
    let at = t["access_token"].as_str().unwrap();
    let r = idp.handle(&Method::GET, "/userinfo", &bearer(at), b"");
    assert_eq!(r.status(), StatusCode::OK);
    let u = body_json(&r);
    assert_eq!(u["sub"], "demo-user-bob");
    assert_eq!(u["email"], "bob@example.com");
    assert_eq!(u["groups"], json!(["users"]));

    let id_token = t["id_token"].as_str().unwrap();
    for h in [bearer(id_token), bearer("garbage"), HeaderMap::new()] {
        let r = idp.handle(&Method::GET, "/userinfo", &h, b"");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(WWW_AUTHENTICATE));
    }
}

#[test]
fn userinfo_refuses_tampered_access_tokens() {
    let idp = idp();
    let code = code_for(&idp, "bob");
    let t = body_json(&exchange(&idp, &code, VERIFIER));
    let parts: Vec<&str> = t["access_token"].as_str().unwrap().split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("demo-user-alice");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
    let r = idp.handle(&Method::GET, "/userinfo", &bearer(&forged), b"");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn userinfo_401s_carry_the_rfc_6750_bearer_challenge() {
    let idp = idp();
    let challenge = |h: &HeaderMap| {
        let r = idp.handle(&Method::GET, "/userinfo", h, b"");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        r.headers()[WWW_AUTHENTICATE].to_str().unwrap().to_owned()
    };
    // No credentials: no error code (RFC 6750 §3.1).
    assert_eq!(
        challenge(&HeaderMap::new()),
        "Bearer realm=\"authgate-demo\""
    );
    let mut basic = HeaderMap::new();
    basic.insert(AUTHORIZATION, HeaderValue::from_static("Basic YTpi"));
    assert_eq!(challenge(&basic), "Bearer realm=\"authgate-demo\"");
    // A token presented and refused.
    assert_eq!(
        challenge(&bearer("garbage")),
        "Bearer realm=\"authgate-demo\", error=\"invalid_token\""
    );
}
