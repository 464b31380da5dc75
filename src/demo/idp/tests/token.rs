//! Tests of the token endpoint: code and refresh grants, client authentication.

use super::*;
use crate::demo::idp::token::{parse_basic, pkce_s256_matches};

#[test]
fn code_exchange_returns_tokens_whose_id_token_verifies_against_jwks() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let r = exchange(&idp, &code, VERIFIER);
    assert_eq!(r.status(), StatusCode::OK, "{}", body_str(&r));
    assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    let t = body_json(&r);
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], DEFAULT_TOKEN_TTL.as_secs());
    assert!(t["refresh_token"].as_str().unwrap().len() >= 32);

    let id = verify_with_jwks(&idp, t["id_token"].as_str().unwrap(), "authgate");
    assert_eq!(id["iss"], "http://127.0.0.1:5556");
    assert_eq!(id["sub"], "demo-user-alice");
    assert_eq!(id["aud"], "authgate");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["name"], "Alice Example");
    assert_eq!(id["groups"], json!(["admins", "devs"]));
    assert!(id["sid"].is_string());
    assert!(id["auth_time"].as_u64().unwrap() <= id["iat"].as_u64().unwrap());
    assert_eq!(
        id["exp"].as_u64().unwrap() - id["iat"].as_u64().unwrap(),
        DEFAULT_TOKEN_TTL.as_secs()
    );

    let at = verify_with_jwks(&idp, t["access_token"].as_str().unwrap(), "authgate");
    assert_eq!(at["sub"], "demo-user-alice");
    assert_eq!(at["groups"], json!(["admins", "devs"]));
    assert!(at.get("nonce").is_none());
}

#[test]
fn unverified_user_carol_gets_email_verified_false() {
    let idp = idp();
    let code = code_for(&idp, "carol");
    let t = body_json(&exchange(&idp, &code, VERIFIER));
    let id = verify_with_jwks(&idp, t["id_token"].as_str().unwrap(), "authgate");
    assert_eq!(id["email_verified"], false);
    assert_eq!(id["groups"], json!(["admins"]));
}

#[test]
fn code_is_single_use() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    assert_eq!(exchange(&idp, &code, VERIFIER).status(), StatusCode::OK);
    let again = exchange(&idp, &code, VERIFIER);
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&again), "invalid_grant");
}

#[test]
fn failed_exchange_still_spends_the_code() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let wrong = "a".repeat(43);
    assert_eq!(error_of(&exchange(&idp, &code, &wrong)), "invalid_grant");
    assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
}

#[test]
fn pkce_verifier_is_checked_with_s256() {
    assert!(pkce_s256_matches(VERIFIER, CHALLENGE));
    assert!(!pkce_s256_matches(&"a".repeat(43), CHALLENGE));
    // The challenge itself, or a too-short verifier, is not a verifier.
    assert!(!pkce_s256_matches(CHALLENGE, CHALLENGE));
    assert!(!pkce_s256_matches("short", CHALLENGE));

    let idp = idp();
    let code = code_for(&idp, "alice");
    let r = token(
        &idp,
        &basic("authgate", SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    );
    assert_eq!(error_of(&r), "invalid_grant", "missing verifier");
}

#[test]
fn verifier_without_challenge_is_refused() {
    let idp = idp();
    let mut p: Vec<_> = auth_params().into_iter().take(6).collect();
    p.push(("username", "alice"));
    p.push(("password", "alice"));
    let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
    let code = query_param(&location(&r), "code").unwrap();
    assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
    // Without PKCE on either side the exchange works.
    let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
    let code = query_param(&location(&r), "code").unwrap();
    let ok = token(
        &idp,
        &basic("authgate", SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    );
    assert_eq!(ok.status(), StatusCode::OK);
}

#[test]
fn code_is_bound_to_client_and_redirect_uri() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let r = token(
        &idp,
        &basic("authgate", SECRET),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:4180/other"),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(error_of(&r), "invalid_grant");

    let code = code_for(&idp, "alice");
    let r = token(
        &idp,
        &basic("other", "other-secret"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    );
    assert_eq!(error_of(&r), "invalid_grant");
}

#[test]
fn expired_code_is_invalid_grant() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    idp.inner
        .grants
        .lock()
        .codes
        .get_mut(&code)
        .unwrap()
        .expires = Instant::now() - Duration::from_secs(1);
    assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
}

#[test]
fn client_authentication_failures_are_invalid_client_401() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let wrong_secret = token(&idp, &basic("authgate", "nope"), &grant);
    assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&wrong_secret), "invalid_client");
    assert!(wrong_secret.headers()[WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .starts_with("Basic"));

    let unknown = token(&idp, &basic("nobody", SECRET), &grant);
    assert_eq!(error_of(&unknown), "invalid_client");

    let none = token(&idp, &HeaderMap::new(), &grant);
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_of(&none), "invalid_client");
    assert_eq!(
        basic_challenge(&none),
        "Basic realm=\"authgate-demo\", charset=\"UTF-8\""
    );

    let mut post_wrong = grant.to_vec();
    post_wrong.extend([("client_id", "authgate"), ("client_secret", "nope")]);
    assert_eq!(
        error_of(&token(&idp, &HeaderMap::new(), &post_wrong)),
        "invalid_client"
    );
    let post_wrong = token(&idp, &HeaderMap::new(), &post_wrong);
    assert_eq!(post_wrong.status(), StatusCode::UNAUTHORIZED);
    basic_challenge(&post_wrong);

    let mut id_only = grant.to_vec();
    id_only.push(("client_id", "authgate"));
    assert_eq!(
        error_of(&token(&idp, &HeaderMap::new(), &id_only)),
        "invalid_client"
    );

    // Two authentication methods at once is a malformed request.
    let mut both = grant.to_vec();
    both.extend([("client_id", "authgate"), ("client_secret", SECRET)]);
    let r = token(&idp, &basic("authgate", SECRET), &both);
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r), "invalid_request");

    // Authentication failures do not spend the code; client_secret_post works.
    let mut post_ok = grant.to_vec();
    post_ok.extend([("client_id", "authgate"), ("client_secret", SECRET)]);
    assert_eq!(
        token(&idp, &HeaderMap::new(), &post_ok).status(),
        StatusCode::OK
    );
}

#[test]
fn basic_credentials_are_form_urldecoded() {
    assert_eq!(
        parse_basic(&STANDARD.encode("my%3Aclient:p%40ss+word")),
        Some(("my:client".to_string(), "p@ss word".to_string()))
    );
    assert_eq!(parse_basic("!!!"), None);
    assert_eq!(parse_basic(&STANDARD.encode("no-colon")), None);
}

#[test]
fn unknown_grant_type_is_unsupported_grant_type() {
    let idp = idp();
    let r = token(
        &idp,
        &basic("authgate", SECRET),
        &[("grant_type", "password"), ("username", "alice")],
    );
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_of(&r), "unsupported_grant_type");
    let r = token(&idp, &basic("authgate", SECRET), &[]);
    assert_eq!(error_of(&r), "invalid_request");
}

#[test]
fn refresh_rotates_the_refresh_token_and_drops_the_nonce() {
    let idp = idp().with_token_ttl(Duration::from_secs(5));
    let before = idp.token_requests();
    let code = code_for(&idp, "alice");
    let first = body_json(&exchange(&idp, &code, VERIFIER));
    let rt1 = first["refresh_token"].as_str().unwrap();
    let first_id = verify_with_jwks(&idp, first["id_token"].as_str().unwrap(), "authgate");

    let refresh = |rt: &str| {
        token(
            &idp,
            &basic("authgate", SECRET),
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
    };
    let r = refresh(rt1);
    assert_eq!(r.status(), StatusCode::OK, "{}", body_str(&r));
    let second = body_json(&r);
    let rt2 = second["refresh_token"].as_str().unwrap();
    assert_ne!(rt1, rt2);
    assert_eq!(second["expires_in"], 5);
    let id = verify_with_jwks(&idp, second["id_token"].as_str().unwrap(), "authgate");
    assert!(id.get("nonce").is_none());
    assert_eq!(id["sid"], first_id["sid"]);
    assert_eq!(id["auth_time"], first_id["auth_time"]);
    assert_eq!(id["exp"].as_u64().unwrap() - id["iat"].as_u64().unwrap(), 5);

    // The old token is spent; the new one works once.
    assert_eq!(error_of(&refresh(rt1)), "invalid_grant");
    assert_eq!(refresh(rt2).status(), StatusCode::OK);
    assert_eq!(error_of(&refresh(rt2)), "invalid_grant");
    assert_eq!(idp.token_requests() - before, 5);
}

#[test]
fn refresh_token_is_bound_to_its_client() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let t = body_json(&exchange(&idp, &code, VERIFIER));
    let r = token(
        &idp,
        &basic("other", "other-secret"),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    );
    assert_eq!(error_of(&r), "invalid_grant");
}

#[test]
fn expired_grants_are_pruned() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    idp.inner
        .grants
        .lock()
        .codes
        .get_mut(&code)
        .unwrap()
        .expires = Instant::now() - Duration::from_secs(1);
    let _ = code_for(&idp, "bob");
    assert!(!idp.inner.grants.lock().codes.contains_key(&code));
}

/// The `WWW-Authenticate` of a token-endpoint 401: present, and `Basic`
/// (RFC 6749 §5.2), whichever client authentication was tried.
fn basic_challenge(r: &Response<Vec<u8>>) -> String {
    let v = r
        .headers()
        .get(WWW_AUTHENTICATE)
        .expect("a 401 carries a challenge")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(v.starts_with("Basic realm="), "{v}");
    v
}

#[test]
fn every_token_endpoint_401_carries_the_basic_challenge_and_other_errors_none() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let unknown = token(&idp, &basic("nobody", SECRET), &grant);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    basic_challenge(&unknown);
    let mut id_only = grant.to_vec();
    id_only.push(("client_id", "authgate"));
    let id_only = token(&idp, &HeaderMap::new(), &id_only);
    assert_eq!(id_only.status(), StatusCode::UNAUTHORIZED);
    basic_challenge(&id_only);
    // A 400 (here a spent code) is not an authentication failure.
    let ok = token(&idp, &basic("authgate", SECRET), &grant);
    assert_eq!(ok.status(), StatusCode::OK);
    let spent = token(&idp, &basic("authgate", SECRET), &grant);
    assert_eq!(spent.status(), StatusCode::BAD_REQUEST);
    assert!(spent.headers().get(WWW_AUTHENTICATE).is_none());
}
