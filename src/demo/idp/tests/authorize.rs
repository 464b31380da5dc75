//! Tests of the authorization endpoint and its login form.

use super::*;

#[test]
fn authorize_shows_login_form_carrying_the_request() {
    let idp = idp();
    let r = get(&idp, &authorize_query(&auth_params()));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    let b = body_str(&r);
    assert!(b.contains("development identity provider — not for production"));
    assert!(b.contains("name=\"username\""));
    assert!(b.contains("name=\"password\""));
    assert!(b.contains("action=\"/authorize\""));
    assert!(b.contains("name=\"state\" value=\"st&amp;ate=1\""));
    assert!(b.contains(&format!("name=\"code_challenge\" value=\"{CHALLENGE}\"")));
    assert!(b.contains("alice") && b.contains("bob"));
    assert!(!b.contains("carol"), "the test-only user is not advertised");
}

#[test]
fn unknown_client_gets_a_400_page_not_a_redirect() {
    let idp = idp();
    let mut p = auth_params();
    p[0] = ("client_id", "nobody");
    let r = get(&idp, &authorize_query(&p));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(LOCATION).is_none());
}

#[test]
fn unregistered_redirect_uri_gets_a_400_page_not_a_redirect() {
    let idp = idp();
    for bad in [
        "https://evil.example/cb",
        "http://127.0.0.1:4180/oauth2/callback/x",
        "http://127.0.0.1:4180/oauth2/callback#f",
        "",
    ] {
        let mut p = auth_params();
        p[1] = ("redirect_uri", bad);
        let r = get(&idp, &authorize_query(&p));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.headers().get(LOCATION).is_none(), "{bad}");
    }
    // Even after a bad password, the POST path redirects nowhere unregistered.
    let mut p = auth_params();
    p[1] = ("redirect_uri", "https://evil.example/cb");
    p.push(("username", "alice"));
    p.push(("password", "alice"));
    let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[test]
fn client_without_registered_uris_accepts_only_loopback_http() {
    let idp = idp();
    let mut ok = 0;
    for (uri, allowed) in [
        ("http://127.0.0.1:9999/oauth2/callback", true),
        ("http://localhost:80/cb", true),
        ("https://127.0.0.1/cb", false),
        ("http://127.0.0.1.evil.example/cb", false),
        ("http://user@127.0.0.1/cb", false),
        ("http://10.0.0.1/cb", false),
    ] {
        let mut p = auth_params();
        p[0] = ("client_id", "other");
        p[1] = ("redirect_uri", uri);
        let status = get(&idp, &authorize_query(&p)).status();
        assert_eq!(status == StatusCode::OK, allowed, "{uri}");
        ok += usize::from(allowed);
    }
    assert_eq!(ok, 2);
}

#[test]
fn wrong_response_type_redirects_an_error_with_state() {
    let idp = idp();
    let mut p = auth_params();
    p[2] = ("response_type", "token");
    let r = get(&idp, &authorize_query(&p));
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = location(&r);
    assert!(loc.as_str().starts_with(REDIRECT));
    assert_eq!(
        query_param(&loc, "error").unwrap(),
        "unsupported_response_type"
    );
    assert_eq!(query_param(&loc, "state").unwrap(), "st&ate=1");
}

#[test]
fn plain_or_missing_pkce_method_and_missing_openid_scope_are_refused() {
    let idp = idp();
    let mut plain = auth_params();
    plain[7] = ("code_challenge_method", "plain");
    let mut no_method = auth_params();
    no_method.pop();
    let mut bad_challenge = auth_params();
    bad_challenge[6] = ("code_challenge", "short");
    for p in [plain, no_method, bad_challenge] {
        let r = get(&idp, &authorize_query(&p));
        assert_eq!(
            query_param(&location(&r), "error").unwrap(),
            "invalid_request"
        );
    }
    let mut no_openid = auth_params();
    no_openid[3] = ("scope", "email");
    let r = get(&idp, &authorize_query(&no_openid));
    assert_eq!(
        query_param(&location(&r), "error").unwrap(),
        "invalid_scope"
    );
}

#[test]
fn repeated_parameters_are_a_bad_request() {
    let idp = idp();
    let mut p = auth_params();
    p.push(("client_id", "other"));
    assert_eq!(
        get(&idp, &authorize_query(&p)).status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn bad_password_reshows_the_form_with_401_and_no_code() {
    let idp = idp();
    for (user, pw) in [("alice", "bob"), ("alice", ""), ("mallory", "mallory")] {
        let r = login_as(&idp, user, pw);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        // RFC 9110 §15.5.2: a challenge, and not Basic (the browser would
        // put its own dialog over the form).
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(challenge, "FormBased realm=\"authgate-demo\"");
        assert!(r.headers().get(LOCATION).is_none());
        let b = body_str(&r);
        assert!(b.contains("Invalid username or password."));
        assert!(b.contains("name=\"password\""));
        assert!(b.contains(&format!("name=\"code_challenge\" value=\"{CHALLENGE}\"")));
    }
    assert!(idp.inner.grants.lock().codes.is_empty());
}

#[test]
fn good_password_redirects_with_code_and_state() {
    let idp = idp();
    let r = login_as(&idp, "alice", "alice");
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = location(&r);
    assert_eq!(loc.path(), "/oauth2/callback");
    assert!(query_param(&loc, "code").unwrap().len() >= 32);
    assert_eq!(query_param(&loc, "state").unwrap(), "st&ate=1");
    // The /login alias behaves the same.
    let mut p = auth_params();
    p.push(("username", "bob"));
    p.push(("password", "bob"));
    let r = idp.handle(&Method::POST, "/login", &HeaderMap::new(), &form(&p));
    assert_eq!(r.status(), StatusCode::FOUND);
}
