//! Tests of RP-initiated logout.

use super::*;

#[test]
fn logout_without_target_shows_signed_out_page() {
    let r = get(&idp(), "/logout");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body_str(&r).contains("Signed out"));
}

#[test]
fn logout_redirects_to_a_registered_origin_with_state() {
    let idp = idp();
    let code = code_for(&idp, "alice");
    let t = body_json(&exchange(&idp, &code, VERIFIER));
    let q = String::from_utf8(form(&[
        ("id_token_hint", t["id_token"].as_str().unwrap()),
        ("post_logout_redirect_uri", "http://127.0.0.1:4180/"),
        ("state", "xyz"),
    ]))
    .unwrap();
    let r = get(&idp, &format!("/logout?{q}"));
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()[LOCATION].to_str().unwrap(),
        "http://127.0.0.1:4180/?state=xyz"
    );
}

#[test]
fn logout_refuses_unregistered_targets_and_forged_hints() {
    let idp = idp();
    let evil = String::from_utf8(form(&[
        ("client_id", "authgate"),
        ("post_logout_redirect_uri", "https://evil.example/"),
    ]))
    .unwrap();
    let r = get(&idp, &format!("/logout?{evil}"));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());

    let forged = String::from_utf8(form(&[
        ("id_token_hint", "e30.e30.AAAA"),
        ("post_logout_redirect_uri", "http://127.0.0.1:4180/"),
    ]))
    .unwrap();
    assert_eq!(
        get(&idp, &format!("/logout?{forged}")).status(),
        StatusCode::BAD_REQUEST
    );
}
