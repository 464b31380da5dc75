//! Login flows from outside (issue 9, faults 3 and 6): the real binary, the
//! embedded development IdP (alice in admins, bob in users), an echo
//! upstream, and a hand-driven client that keeps cookies like a browser.
//! Pending-login cookies stay small for any URL length and any number of
//! logins; every login lands on its own URL; a refused account sees who is
//! signed in and a way to another account; a reloaded callback starts over.

use crate::support::*;

struct World {
    _idp: TestServer,
    _up: TestServer,
    gate: Authgate,
    client: reqwest::Client,
}

async fn world_with(provider: &[&str]) -> World {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    cfg.provider = provider.iter().map(|l| l.to_string()).collect();
    let gate = Authgate::run(&cfg).await;
    World {
        _idp: idp,
        _up: up,
        gate,
        client: client(),
    }
}

async fn world() -> World {
    world_with(&[]).await
}

/// A dashboard-like URL of about `len` bytes: an encoded path and a query
/// with encoded characters, so "intact" means byte for byte.
fn long_path(len: usize) -> String {
    let head = "/dash%20board/caf%C3%A9?panel=a%26b&v=";
    format!("{head}{}", "x".repeat(len.saturating_sub(head.len())))
}

/// `name=value` of every `Set-Cookie` line.
fn set_cookie_pairs(resp: &reqwest::Response) -> Vec<String> {
    set_cookies(resp)
        .iter()
        .map(|l| l.split(';').next().unwrap_or_default().to_owned())
        .collect()
}

fn csrf_names(jar: &Jar) -> Vec<String> {
    jar.names_with("_oauth2_proxy_csrf")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_urls_land_whole_and_each_flow_cookie_stays_small() {
    let w = world().await;
    for len in [2_800, 8 * 1024, 12_000] {
        let path = long_path(len);
        let url = w.gate.url(&path);
        let mut jar = Jar::default();
        let start = get(&w.client, &mut jar, &url, "text/html").await;
        assert_eq!(start.status(), 302, "login for a {len}-byte URL");
        for pair in set_cookie_pairs(&start) {
            assert!(
                pair.len() < 1_000,
                "a {len}-byte URL made a {}-byte flow cookie",
                pair.len()
            );
        }
        let callback = login_at_idp(&w.client, &location(&start), "alice").await;
        let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
        assert_eq!(cb.status(), 302, "callback for a {len}-byte URL");
        let landed = cb.headers()["location"].to_str().unwrap().to_owned();
        assert_eq!(landed, url, "a {len}-byte URL lands whole");
        let page = get(&w.client, &mut jar, &landed, "text/html").await;
        assert_eq!(page.status(), 200);
        assert!(csrf_names(&jar).is_empty(), "{jar:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_beyond_the_maximum_is_cut_to_its_path_not_refused() {
    let w = world().await;
    let mut jar = Jar::default();
    let url = w.gate.url(&format!("/deep/page?v={}", "y".repeat(20_000)));
    let start = get(&w.client, &mut jar, &url, "text/html").await;
    assert_eq!(start.status(), 302);
    let callback = login_at_idp(&w.client, &location(&start), "alice").await;
    let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    let landed = cb.headers()["location"].to_str().unwrap();
    assert!(
        landed == w.gate.url("/deep/page"),
        "landed on {} bytes: {}",
        landed.len(),
        &landed[..landed.len().min(80)]
    );
    assert!(!jar.session_names().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pending_logins_keep_the_cookie_header_under_proxy_limits() {
    let w = world().await;
    let mut jar = Jar::default();
    let mut flows = Vec::new();
    // Tabs restored after a weekend, each with a long dashboard URL.
    for tab in 0..20 {
        let path = format!("{}&tab={tab}", long_path(2_800));
        let authorize = start_login(&w.client, &mut jar, &w.gate.url(&path)).await;
        let cookie_line = format!("Cookie: {}", jar.header());
        assert!(
            cookie_line.len() <= 4_096,
            "after {} logins the Cookie line is {} bytes",
            tab + 1,
            cookie_line.len()
        );
        assert!(csrf_names(&jar).len() <= 4, "{:?}", csrf_names(&jar));
        flows.push((path, authorize));
    }
    // The newest flow completes as it is.
    let (path, authorize) = flows.pop().unwrap();
    let callback = login_at_idp(&w.client, &authorize, "alice").await;
    let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(
        cb.headers()["location"].to_str().unwrap(),
        w.gate.url(&path)
    );
    // The oldest one's cookie was evicted: its callback starts a fresh
    // login back to its own URL, never an error page or a session.
    let (path, authorize) = flows.remove(0);
    let mut fresh = Jar::default();
    let callback = login_at_idp(&w.client, &authorize, "alice").await;
    let again = get(&w.client, &mut fresh, callback.as_str(), "text/html").await;
    assert_eq!(again.status(), 302, "an evicted flow's callback");
    assert!(fresh.session_names().is_empty(), "{fresh:?}");
    let callback = login_at_idp(&w.client, &location(&again), "alice").await;
    let cb = get(&w.client, &mut fresh, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(
        cb.headers()["location"].to_str().unwrap(),
        w.gate.url(&path)
    );
}

/// The `href` of the 403 page's "sign in with another account" link.
fn another_account_link(body: &str) -> String {
    let href = regex::Regex::new(r#"id="another-account" href="([^"]+)""#)
        .unwrap()
        .captures(body)
        .unwrap_or_else(|| panic!("no 'another account' link: {body}"))[1]
        .to_owned();
    html_escape::decode_html_entities(&href).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_sees_his_email_and_signs_in_with_another_account() {
    let w = world().await;
    let mut jar = Jar::default();
    let path = "/private/report?range=7d&q=a%20b";
    let authorize = start_login(&w.client, &mut jar, &w.gate.url(path)).await;
    let callback = login_at_idp(&w.client, &authorize, "bob").await;
    let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 403);
    assert!(jar.session_names().is_empty(), "bob got a session: {jar:?}");
    let body = cb.text().await.unwrap();
    assert!(body.contains("bob@example.com"), "{body}");
    let link = another_account_link(&body);
    assert!(link.starts_with("/oauth2/start?"), "{link}");

    // Reloading the spent callback URL starts a fresh login, no session.
    let reload = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(reload.status(), 302, "a reloaded callback starts over");
    assert!(location(&reload)
        .as_str()
        .starts_with(&format!("http://127.0.0.1:{}/", w._idp.port())));
    assert!(jar.session_names().is_empty());

    // The link: a fresh login with prompt=login, back to the same URL.
    let start = get(&w.client, &mut jar, &w.gate.url(&link), "text/html").await;
    assert_eq!(start.status(), 302);
    let authorize = location(&start);
    assert_eq!(
        query_param(&authorize, "prompt").as_deref(),
        Some("login"),
        "{authorize}"
    );
    let callback = login_at_idp(&w.client, &authorize, "alice").await;
    let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(cb.headers()["location"].to_str().unwrap(), w.gate.url(path));
    let page = get(&w.client, &mut jar, &w.gate.url(path), "text/html").await;
    assert_eq!(page.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_403_page_names_the_signed_in_email() {
    let w = world().await;
    let redirect_uri = w.gate.url("/oauth2/callback");
    let bob = id_token(&w._idp, &redirect_uri, "bob").await;
    for path in ["/app?x=1", "/oauth2/auth"] {
        let r = w
            .client
            .get(w.gate.url(path))
            .header("accept", "text/html")
            .header("authorization", format!("Bearer {bob}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains("bob@example.com"), "{path}: {body}");
        let link = another_account_link(&body);
        assert!(link.contains("prompt=login"), "{path}: {link}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_callback_after_sign_in_starts_a_fresh_login_to_the_same_url() {
    let w = world().await;
    let mut jar = Jar::default();
    let path = "/after?reload=1";
    let authorize = start_login(&w.client, &mut jar, &w.gate.url(path)).await;
    let callback = login_at_idp(&w.client, &authorize, "alice").await;
    let first = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(first.status(), 302);
    let session = jar.header();

    let reload = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(reload.status(), 302, "the reload starts over");
    let fresh = location(&reload);
    assert_ne!(
        query_param(&fresh, "state"),
        query_param(&callback, "state")
    );
    assert!(
        set_cookies(&reload)
            .iter()
            .all(|c| c.starts_with("_oauth2_proxy_csrf")),
        "no session from a spent code: {:?}",
        set_cookies(&reload)
    );
    assert!(jar.header().contains(&session[..40]));
    let callback = login_at_idp(&w.client, &fresh, "alice").await;
    let cb = get(&w.client, &mut jar, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    assert_eq!(cb.headers()["location"].to_str().unwrap(), w.gate.url(path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_auth_params_go_to_every_authorization_request() {
    let w = world_with(&["  extra_auth_params: { kc_idp_hint: github, prompt: consent }"]).await;
    let mut jar = Jar::default();
    let authorize = start_login(&w.client, &mut jar, &w.gate.url("/x")).await;
    assert_eq!(
        query_param(&authorize, "kc_idp_hint").as_deref(),
        Some("github")
    );
    assert_eq!(
        query_param(&authorize, "prompt").as_deref(),
        Some("consent")
    );
    // The "another account" login asks for prompt=login, once.
    let again = start_login(
        &w.client,
        &mut jar,
        &w.gate.url("/oauth2/start?rd=%2Fx&prompt=login"),
    )
    .await;
    let prompts: Vec<_> = again
        .query_pairs()
        .filter(|(k, _)| k == "prompt")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(prompts, ["login"]);
    assert_eq!(
        query_param(&again, "kc_idp_hint").as_deref(),
        Some("github")
    );
}

#[test]
fn extra_auth_params_may_not_override_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("authgate.yaml");
    std::fs::write(
        &file,
        format!(
            "provider:\n  issuer_url: http://127.0.0.1:1\n  client_id: a\n  client_secret: b\n  \
             extra_auth_params: {{ state: x, \"bad name\": y, login_hint: ok }}\n\
             cookie:\n  secret: \"{COOKIE_SECRET}\"\nupstreams:\n  - path: /\n    url: http://127.0.0.1:2\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let text = format!("{stdout}{stderr}");
    assert!(text.contains("provider.extra_auth_params.state"), "{text}");
    assert!(
        text.contains("provider.extra_auth_params.bad name"),
        "{text}"
    );
    assert!(!text.contains("login_hint"), "{text}");
}
