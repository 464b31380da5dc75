//! Browser sign-in from outside: the real binary, the embedded development
//! IdP (alice/alice in admins+devs, bob/bob in users), an echo upstream, and a
//! client that handles cookies and redirects by hand like a browser would.

use crate::support::*;
use serde_json::Value;

struct World {
    idp: TestServer,
    up: TestServer,
    gate: Authgate,
    client: reqwest::Client,
}

async fn world() -> World {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", up.port())])).await;
    World {
        idp,
        up,
        gate,
        client: client(),
    }
}

impl World {
    fn idp_port(&self) -> u16 {
        self.idp.port()
    }

    /// Logs `user` in starting from `path`; returns the jar and the callback answer.
    async fn login(&self, path: &str, user: &str) -> (Jar, reqwest::Response) {
        let mut jar = Jar::default();
        let cb = login(&self.client, &mut jar, &self.gate.url(path), user).await;
        (jar, cb)
    }

    async fn alice(&self) -> Jar {
        let (jar, cb) = self.login("/", "alice").await;
        assert_eq!(cb.status(), 302, "callback for alice");
        assert!(
            !jar.session_names().is_empty(),
            "no session cookie: {jar:?}"
        );
        jar
    }

    async fn get(&self, jar: &mut Jar, path: &str, accept: &str) -> reqwest::Response {
        get(&self.client, jar, &self.gate.url(path), accept).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_signs_in_and_upstream_sees_her_identity_headers() {
    let w = world().await;
    let (jar, cb) = w.login("/dashboard?tab=1", "alice").await;
    assert_eq!(cb.status(), 302);
    let target = location(&cb);
    assert_eq!(target.path(), "/dashboard");
    assert_eq!(target.query(), Some("tab=1"));
    assert!(
        !jar.session_names().is_empty(),
        "no session cookie: {jar:?}"
    );
    assert!(
        jar.names_with("_oauth2_proxy_csrf").is_empty(),
        "callback left the CSRF cookie: {jar:?}"
    );
    assert!(w.up.seen().is_empty(), "upstream reached before login");

    // Forged identity and a foreign cookie come along; only ours survive.
    let r = w
        .client
        .get(w.gate.url("/dashboard?tab=1"))
        .header("accept", "text/html")
        .header("cookie", format!("{}; theme=dark", jar.header()))
        .header("x-forwarded-email", "mallory@evil.example")
        .header("X_Auth_Request_Groups", "admins,root")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo = echo_json(&r.text().await.unwrap());
    assert_eq!(
        echoed_header(&echo, "x-forwarded-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        echoed_header(&echo, "x-auth-request-email"),
        ["alice@example.com"]
    );
    assert_eq!(
        echoed_header(&echo, "x-auth-request-groups"),
        ["admins,devs"]
    );
    assert!(echoed_header(&echo, "X_Auth_Request_Groups").is_empty());
    let cookies = echoed_header(&echo, "cookie").join("; ");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(
        !cookies.contains("_oauth2_proxy"),
        "session leaked upstream: {cookies}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_signs_in_but_is_forbidden_with_403() {
    let w = world().await;
    let (mut jar, cb) = w.login("/", "bob").await;
    // Either the callback itself refuses bob, or it sets a session the page refuses.
    if cb.status() == 302 {
        let r = w.get(&mut jar, "/", "text/html").await;
        assert_eq!(r.status(), 403);
        let auth = w.get(&mut jar, "/oauth2/auth", "application/json").await;
        assert_eq!(auth.status(), 403);
    } else {
        assert_eq!(cb.status(), 403);
    }
    assert!(w.up.seen().is_empty(), "bob reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_auth_answers_202_with_identity_for_alice_and_401_for_anonymous() {
    let w = world().await;
    let mut anon = Jar::default();
    let r = w.get(&mut anon, "/oauth2/auth", "*/*").await;
    assert_eq!(r.status(), 401);

    let mut jar = w.alice().await;
    let r = w.get(&mut jar, "/oauth2/auth", "*/*").await;
    assert_eq!(r.status(), 202);
    let h = r.headers();
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    assert_eq!(h["x-auth-request-groups"], "admins,devs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_userinfo_returns_alice_as_json_and_401_anonymous() {
    let w = world().await;
    let mut anon = Jar::default();
    let r = w
        .get(&mut anon, "/oauth2/userinfo", "application/json")
        .await;
    assert_eq!(r.status(), 401);

    let mut jar = w.alice().await;
    let r = w
        .get(&mut jar, "/oauth2/userinfo", "application/json")
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["email"], "alice@example.com");
    assert_eq!(v["user"], "alice@example.com");
    assert_eq!(v["preferred_username"], "alice");
    assert_eq!(v["groups"], serde_json::json!(["admins", "devs"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_clears_the_session_cookies() {
    let w = world().await;
    let mut jar = w.alice().await;
    let held = jar.session_names();
    let r = w
        .get(&mut jar, "/oauth2/sign_out?rd=/bye", "text/html")
        .await;
    assert_eq!(r.status(), 302);
    // The demo IdP publishes end_session_endpoint: RP-initiated logout there,
    // coming back to `rd` afterwards.
    let idp_logout = location(&r);
    assert_eq!(idp_logout.port(), Some(w.idp_port()));
    assert!(
        query_param(&idp_logout, "id_token_hint").is_some(),
        "{idp_logout}"
    );
    assert_eq!(
        query_param(&idp_logout, "post_logout_redirect_uri"),
        Some(w.gate.url("/bye"))
    );
    let cleared = set_cookies(&r);
    for name in held {
        assert!(
            cleared.iter().any(|c| c.starts_with(&format!("{name}="))),
            "{name} not cleared: {cleared:?}"
        );
    }
    assert!(jar.session_names().is_empty(), "{jar:?}");
    let r = w.get(&mut jar, "/oauth2/auth", "*/*").await;
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_session_cookie_is_treated_as_anonymous_never_5xx() {
    let w = world().await;
    let jar = w.alice().await;
    let name = jar.session_names()[0].clone();
    let value = jar.0[&name].clone();
    let mut flipped = value.clone().into_bytes();
    let mid = flipped.len() / 2;
    flipped[mid] = if flipped[mid] == b'A' { b'B' } else { b'A' };
    let variants = [
        String::from_utf8(flipped).unwrap(),
        value[..value.len() / 2].to_owned(),
        format!("{value}x"),
        "not-base64!!".to_owned(),
        String::new(),
    ];
    for v in variants {
        let mut bad = jar.clone();
        bad.0.insert(name.clone(), v.clone());
        let r = w.get(&mut bad, "/oauth2/auth", "*/*").await;
        assert_eq!(r.status(), 401, "auth with {v:?}");
        let r = w.get(&mut bad, "/page", "application/json").await;
        assert_eq!(r.status(), 401, "api with {v:?}");
        let r = w.get(&mut bad, "/page", "text/html").await;
        assert_eq!(r.status(), 302, "page with {v:?}");
    }
    assert!(w.up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_callback_is_rejected_and_sets_no_session() {
    let w = world().await;
    let mut jar = Jar::default();
    let authorize = start_login(&w.client, &mut jar, &w.gate.url("/")).await;
    let csrf = jar.clone();
    let idp = submit_idp_form(&w.client, &authorize, "alice", "alice").await;
    assert_eq!(idp.status(), 302);
    let callback = location(&idp);
    let first = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(first.status(), 302);

    // The attacker replays the same URL with the flow's original CSRF cookie.
    let mut replay_jar = csrf.clone();
    let replay = get(&w.client, &mut replay_jar, callback.as_str(), "text/html").await;
    let status = replay.status().as_u16();
    assert!((400..500).contains(&status), "replay answered {status}");
    assert!(replay_jar.session_names().is_empty(), "{replay_jar:?}");
    // And without any cookie at all.
    let mut empty = Jar::default();
    let replay = get(&w.client, &mut empty, callback.as_str(), "text/html").await;
    let status = replay.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "cookieless replay answered {status}"
    );
    assert!(empty.session_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_logins_started_in_parallel_both_complete() {
    let w = world().await;
    let mut jar = Jar::default();
    let first = start_login(&w.client, &mut jar, &w.gate.url("/first")).await;
    let second = start_login(&w.client, &mut jar, &w.gate.url("/second")).await;
    assert_ne!(query_param(&first, "state"), query_param(&second, "state"));
    let csrf = jar.names_with("_oauth2_proxy_csrf");
    assert_eq!(csrf.len(), 2, "one CSRF cookie per flow: {csrf:?}");

    // Finish them in the opposite order, both in the one browser.
    for (authorize, path) in [(second, "/second"), (first, "/first")] {
        let idp = submit_idp_form(&w.client, &authorize, "alice", "alice").await;
        assert_eq!(idp.status(), 302);
        let cb = get(&w.client, &mut jar, location(&idp).as_str(), "text/html").await;
        assert_eq!(cb.status(), 302, "callback for {path}");
        assert_eq!(location(&cb).path(), path);
        assert!(!jar.session_names().is_empty());
    }
    assert!(jar.names_with("_oauth2_proxy_csrf").is_empty(), "{jar:?}");
    let r = get(&w.client, &mut jar, &w.gate.url("/oauth2/auth"), "*/*").await;
    assert_eq!(r.status(), 202);
}

/// `authgate demo` is the README's first command: the whole system in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_signs_alice_in_and_forbids_bob() {
    let gate = Authgate::demo().await;
    let c = client();
    let mut jar = Jar::default();
    let cb = login(&c, &mut jar, &gate.url("/"), "alice").await;
    assert_eq!(cb.status(), 302);
    let r = get(&c, &mut jar, &gate.url("/"), "text/html").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap().to_ascii_lowercase();
    assert!(page.contains("x-forwarded-email"), "{page}");
    assert!(page.contains("alice@example.com"), "{page}");
    assert!(page.contains("x-auth-request-groups"), "{page}");
    assert!(page.contains("admins,devs"), "{page}");

    let mut bob = Jar::default();
    let cb = login(&c, &mut bob, &gate.url("/"), "bob").await;
    let status = if cb.status() == 302 {
        get(&c, &mut bob, &gate.url("/"), "text/html")
            .await
            .status()
    } else {
        cb.status()
    };
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_state_authgate_could_not_have_issued_is_400_without_any_set_cookie() {
    let w = world().await;
    let mut jar = Jar::default();
    let authorize = start_login(&w.client, &mut jar, &w.gate.url("/")).await;
    let callback = login_at_idp(&w.client, &authorize, "alice").await;
    let state = query_param(&callback, "state").unwrap();
    assert_eq!(state.len(), 43, "authgate's states are 43 base64url chars");
    for bad in [
        "x=1;Path=/a;".to_owned(),
        format!("{state};Path=/"),
        state[..42].to_owned(),
        format!("{}.", &state[..42]),
    ] {
        let mut forged = callback.clone();
        let pairs: Vec<(String, String)> = callback
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "state" {
                    bad.clone()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        forged.query_pairs_mut().clear().extend_pairs(pairs);
        let r = w
            .client
            .get(forged.as_str())
            .header("accept", "text/html")
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "state {bad:?}");
        assert_eq!(set_cookies(&r), Vec::<String>::new(), "state {bad:?}");
    }
    // The genuine callback is still good: only the state was refused.
    let r = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(r.status(), 302);
    assert!(!jar.session_names().is_empty(), "{jar:?}");
}
