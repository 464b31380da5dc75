//! Edges from the field (issue 9, faults 1, 7 and 8), against the real
//! binary and the demo IdP served in-process:
//!
//! - every 401, on every listener, says how to authenticate
//!   (`WWW-Authenticate: Bearer realm="authgate"`, with
//!   `error="invalid_token"` when a presented JWT was refused);
//! - no post-login or post-logout target points back at authgate's own
//!   `/oauth2/*` endpoints (nginx's `X-Auth-Request-Redirect: $request_uri`
//!   on a sign-out link);
//! - `/oauth2/sign_in?rd=…` starts the login like `/oauth2/start` (the
//!   nginx and Caddy configurations oauth2-proxy documents).

use crate::support;

use crate::support::{Authgate, GateConfig, Jar, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};

/// Request headers as (name, value) pairs.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The challenge for "no token authgate verifies" (none, or an opaque one).
const PLAIN: &str = r#"Bearer realm="authgate""#;
/// The challenge for a presented JWT that was refused.
const REFUSED: &str = r#"Bearer realm="authgate", error="invalid_token""#;
/// A JWT in shape only: three non-empty parts no issuer signed.
const FORGED_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vIn0.eyJzdWIiOiJhbGljZSJ9.c2ln";

struct Env {
    gate: Authgate,
    idp: TestServer,
    up: TestServer,
    http_check: std::net::SocketAddr,
    grpc_port: u16,
    client: reqwest::Client,
}

async fn env() -> Env {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    let (http_port, grpc_port) = cfg.with_ext_authz();
    cfg.authorization.push("  api_routes: [\"^/api/\"]".into());
    // The generated file ends `authorization:` with these lines verbatim:
    // a top-level section after them is the simplest way to add one.
    cfg.authorization.push("redirect:".into());
    cfg.authorization
        .push("  allowed_domains: [\".allowed.test\"]".into());
    let gate = Authgate::run(&cfg).await;
    Env {
        gate,
        idp,
        up,
        http_check: ([127, 0, 0, 1], http_port).into(),
        grpc_port,
        client: support::client(),
    }
}

impl Env {
    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.gate.port)
    }

    /// Status and every `WWW-Authenticate` value of the proxy's answer.
    async fn proxy(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
        let h = with_host(self, headers);
        let (status, h) = support::raw_get(self.gate.addr(), path, &refs(&h)).await;
        (status, values(&h, "www-authenticate"))
    }

    /// The same through the ext_authz HTTP check, as Envoy sends it.
    async fn http_check(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
        let h = with_host(self, headers);
        let (status, h) = support::raw_get(self.http_check, path, &refs(&h)).await;
        (status, values(&h, "www-authenticate"))
    }

    /// The same through the gRPC check: the `denied_response`'s status and
    /// challenges (200 for an allow).
    async fn grpc_check(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
        let mut grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{}", self.grpc_port))
            .await
            .unwrap();
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        method: "GET".into(),
                        host: self.host(),
                        path: path.into(),
                        scheme: "http".into(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let resp = grpc.check(req).await.unwrap().into_inner();
        match resp.http_response {
            Some(HttpResponse::DeniedResponse(d)) => {
                let status = d.status.unwrap().code as u16;
                let challenges = d
                    .headers
                    .iter()
                    .filter_map(|o| o.header.as_ref())
                    .filter(|h| h.key.eq_ignore_ascii_case("www-authenticate"))
                    .map(|h| h.value.clone())
                    .collect();
                (status, challenges)
            }
            Some(HttpResponse::OkResponse(_)) => (200, Vec::new()),
            other => panic!("no http_response: {other:?}"),
        }
    }

    /// A whole browser login that starts at `start` (a URL on the proxy)
    /// with `extra` request headers; returns the callback's raw `Location`.
    async fn login_from(&self, start: &str, extra: &[(&str, &str)], user: &str) -> String {
        let mut jar = Jar::default();
        let mut req = self.client.get(start).header("accept", "text/html");
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let first = req.send().await.unwrap();
        assert_eq!(first.status(), 302, "{start} did not start a login");
        jar.update(&first);
        let authorize = support::location(&first);
        assert_eq!(authorize.port(), Some(self.idp.port()), "{authorize}");
        assert_eq!(jar.names_with("_oauth2_proxy_csrf").len(), 1, "{jar:?}");
        let callback = support::login_at_idp(&self.client, &authorize, user).await;
        let cb = support::get(&self.client, &mut jar, callback.as_str(), "text/html").await;
        assert_eq!(cb.status(), 302, "callback for {start}");
        assert!(!jar.session_names().is_empty(), "no session: {jar:?}");
        cb.headers()["location"].to_str().unwrap().to_owned()
    }

    /// alice's session cookies, from a login started at `/`.
    async fn alice(&self) -> Jar {
        let mut jar = Jar::default();
        let cb = support::login(&self.client, &mut jar, &self.gate.url("/"), "alice").await;
        assert_eq!(cb.status(), 302);
        jar
    }
}

/// `headers` after the `Host` the client (or Envoy) names.
fn with_host(env: &Env, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![("host".to_owned(), env.host())];
    h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn values(h: &http::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// === fault 1: every 401 says how to authenticate ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_401_on_every_listener_carries_the_right_bearer_challenge() {
    let e = env().await;
    let forged = format!("Bearer {FORGED_JWT}");
    let json = ("accept", "application/json");
    let html = ("accept", "text/html");
    // (what, path, headers, challenge expected on the 401)
    let cases: Vec<(&str, &str, Headers<'_>, &str)> = vec![
        (
            "opaque token, JSON",
            "/",
            vec![json, ("authorization", "Bearer not-a-jwt")],
            PLAIN,
        ),
        ("anonymous JSON", "/", vec![json], PLAIN),
        (
            "anonymous XHR",
            "/app",
            vec![html, ("x-requested-with", "XMLHttpRequest")],
            PLAIN,
        ),
        (
            "anonymous API route, browser",
            "/api/items",
            vec![html],
            PLAIN,
        ),
        (
            "opaque token, API route",
            "/api/items",
            vec![html, ("authorization", "Bearer glsa_opaque")],
            PLAIN,
        ),
        (
            "Basic credentials, JSON",
            "/",
            vec![json, ("authorization", "Basic dXNlcjpwYXNz")],
            PLAIN,
        ),
        (
            "refused JWT, JSON",
            "/",
            vec![json, ("authorization", forged.as_str())],
            REFUSED,
        ),
        (
            "refused JWT, browser",
            "/app",
            vec![html, ("authorization", forged.as_str())],
            REFUSED,
        ),
        (
            "refused JWT, API route",
            "/api/items",
            vec![json, ("authorization", forged.as_str())],
            REFUSED,
        ),
    ];
    for (what, path, headers, want) in &cases {
        let proxy = e.proxy(path, headers).await;
        assert_eq!(proxy, (401, vec![want.to_string()]), "proxy: {what}");
        let http = e.http_check(path, headers).await;
        assert_eq!(
            http,
            (401, vec![want.to_string()]),
            "ext_authz HTTP: {what}"
        );
        let grpc = e.grpc_check(path, headers).await;
        assert_eq!(
            grpc,
            (401, vec![want.to_string()]),
            "ext_authz gRPC: {what}"
        );
    }
    // authgate's own endpoints on `listen`.
    for endpoint in ["/oauth2/auth", "/oauth2/userinfo"] {
        for (what, headers, want) in [
            ("anonymous", vec![("accept", "*/*")], PLAIN),
            (
                "opaque token",
                vec![("authorization", "Bearer not-a-jwt")],
                PLAIN,
            ),
            (
                "refused JWT",
                vec![("authorization", forged.as_str())],
                REFUSED,
            ),
        ] {
            let got = e.proxy(endpoint, &headers).await;
            assert_eq!(got, (401, vec![want.to_string()]), "{endpoint}: {what}");
        }
    }
    // A browser without credentials still goes to the IdP: no 401, no challenge.
    let (status, challenges) = e.proxy("/app", &[html]).await;
    assert_eq!((status, challenges.len()), (302, 0));
    // And a verified JWT is no 401 at all.
    let token = support::id_token(&e.idp, &e.gate.url("/oauth2/callback"), "alice").await;
    let bearer = format!("Bearer {token}");
    let (status, challenges) = e.proxy("/oauth2/auth", &[("authorization", &bearer)]).await;
    assert_eq!((status, challenges.len()), (202, 0));
}

// === fault 7: no target points back at authgate's own endpoints ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_link_behind_nginx_returns_to_root_not_to_sign_out() {
    let e = env().await;
    let root = e.gate.url("/");
    let to_start = format!(
        "/oauth2/sign_out?rd={}",
        urlencode(&e.gate.url("/oauth2/start?rd=/x"))
    );
    // nginx's `proxy_set_header X-Auth-Request-Redirect $request_uri;` on
    // `location /oauth2/`, and the same loops spelt other ways.
    for (what, path, redirect_header) in [
        (
            "nginx $request_uri",
            "/oauth2/sign_out",
            Some("/oauth2/sign_out"),
        ),
        (
            "nginx $request_uri with a query",
            "/oauth2/sign_out?x=1",
            Some("/oauth2/sign_out?x=1"),
        ),
        (
            "rd to sign_out",
            "/oauth2/sign_out?rd=%2Foauth2%2Fsign_out",
            None,
        ),
        (
            "rd to start, absolute on the own host",
            to_start.as_str(),
            None,
        ),
        (
            "rd to the callback on an allowed domain",
            "/oauth2/sign_out?rd=https%3A%2F%2Fapp.allowed.test%2Foauth2%2Fcallback",
            None,
        ),
        (
            "rd to sign_in with the query encoded",
            "/oauth2/sign_out?rd=%2Foauth2%2Fsign_in%253Frd%3D%2Fx",
            None,
        ),
    ] {
        let mut jar = e.alice().await;
        let mut req = e
            .client
            .get(e.gate.url(path))
            .header("accept", "text/html")
            .header("cookie", jar.header());
        if let Some(h) = redirect_header {
            req = req.header("x-auth-request-redirect", h);
        }
        let r = req.send().await.unwrap();
        jar.update(&r);
        assert_eq!(r.status(), 302, "{what}");
        let logout = support::location(&r);
        assert_eq!(
            logout.port(),
            Some(e.idp.port()),
            "{what}: {}",
            logout.path()
        );
        assert_eq!(
            support::query_param(&logout, "post_logout_redirect_uri").as_deref(),
            Some(root.as_str()),
            "{what}: {}",
            logout.path()
        );
        assert!(jar.session_names().is_empty(), "{what}: {jar:?}");
    }
    // An ordinary target is kept.
    let jar = e.alice().await;
    let r = e
        .client
        .get(e.gate.url("/oauth2/sign_out"))
        .header("cookie", jar.header())
        .header("x-auth-request-redirect", "/bye?see=you")
        .send()
        .await
        .unwrap();
    let logout = support::location(&r);
    assert_eq!(
        support::query_param(&logout, "post_logout_redirect_uri"),
        Some(e.gate.url("/bye?see=you"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_never_lands_on_authgates_own_endpoints() {
    let e = env().await;
    let start = |rd: &str| e.gate.url(&format!("/oauth2/start?rd={}", urlencode(rd)));
    let cases: Vec<(&str, String, Headers<'_>)> = vec![
        ("rd to sign_out", start("/oauth2/sign_out"), vec![]),
        (
            "rd to start, absolute",
            start(&e.gate.url("/oauth2/start?rd=/x")),
            vec![],
        ),
        (
            "rd to sign_in on an allowed domain",
            start("https://app.allowed.test/oauth2/sign_in?rd=/x"),
            vec![],
        ),
        (
            "X-Auth-Request-Redirect to the callback",
            e.gate.url("/oauth2/start"),
            vec![("x-auth-request-redirect", "/oauth2/callback?code=c&state=s")],
        ),
        (
            "X-Auth-Request-Redirect to userinfo, %3F-cut",
            e.gate.url("/oauth2/start"),
            vec![("x-auth-request-redirect", "/oauth2/userinfo%3Fx")],
        ),
    ];
    for (what, url, extra) in &cases {
        let landed = e.login_from(url, extra, "alice").await;
        assert_eq!(landed, "/", "{what}");
    }
    // The app's own paths next to them are kept.
    let landed = e
        .login_from(&start("/oauth2-docs/sign_out?tab=1"), &[], "alice")
        .await;
    assert_eq!(landed, "/oauth2-docs/sign_out?tab=1");
    let landed = e
        .login_from(&start("https://app.allowed.test/dash"), &[], "alice")
        .await;
    assert_eq!(landed, "https://app.allowed.test/dash");
}

// === fault 8: /oauth2/sign_in ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_starts_the_login_and_keeps_a_validated_rd() {
    let e = env().await;
    // oauth2-proxy's nginx config:
    // `return 302 /oauth2/sign_in?rd=$scheme://$host$request_uri;`
    let wanted = e.gate.url("/dashboard?tab=2&q=a%20b");
    let url = e
        .gate
        .url(&format!("/oauth2/sign_in?rd={}", urlencode(&wanted)));
    assert_eq!(e.login_from(&url, &[], "alice").await, wanted);
    // Relative rd, and rd from X-Auth-Request-Redirect, as /oauth2/start.
    let url = e.gate.url("/oauth2/sign_in?rd=%2Freports%3Fy%3D1");
    assert_eq!(e.login_from(&url, &[], "alice").await, "/reports?y=1");
    let landed = e
        .login_from(
            &e.gate.url("/oauth2/sign_in"),
            &[("x-auth-request-redirect", "/from-header")],
            "alice",
        )
        .await;
    assert_eq!(landed, "/from-header");
    // An unsafe rd becomes `/`, never an off-site redirect.
    for bad in ["https://evil.test/", "//evil.test/", "/\\evil.test"] {
        let url = e
            .gate
            .url(&format!("/oauth2/sign_in?rd={}", urlencode(bad)));
        assert_eq!(e.login_from(&url, &[], "alice").await, "/", "{bad}");
    }
    // Like /oauth2/start, it answers API clients with the redirect too (it
    // is a link, never an API call), and never reaches the app.
    let r = e
        .client
        .get(e.gate.url("/oauth2/sign_in?rd=/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(support::location(&r).port(), Some(e.idp.port()));
    assert!(
        e.up.seen().iter().all(|s| !s.target.contains("sign_in")),
        "the app saw /oauth2/sign_in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_the_apps_path_on_the_ext_authz_listeners() {
    let e = env().await;
    let jar = e.alice().await;
    let cookie = jar.header();
    // With alice's session it is an allowed request for the app, not a login.
    let (status, _) = e
        .http_check("/oauth2/sign_in?rd=/x", &[("cookie", &cookie)])
        .await;
    assert_eq!(status, 200);
    let (status, _) = e
        .grpc_check("/oauth2/sign_in?rd=/x", &[("cookie", &cookie)])
        .await;
    assert_eq!(status, 200);
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
