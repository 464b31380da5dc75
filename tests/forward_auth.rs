//! `/oauth2/auth` asked by a forward-auth caller (Traefik `forwardAuth`,
//! Caddy `forward_auth`, nginx / ingress-nginx `auth_request`) about the
//! original request it reports in `X-Forwarded-Method` / `X-Forwarded-Uri`,
//! `X-Original-Method` / `X-Original-URI` or `X-Original-URL`: the real
//! binary, the test playing the caller from 127.0.0.1, trusted
//! (`server.trusted_proxies`) or not.

use std::time::Duration;

use crate::support::*;

/// The rules every test here runs with.
fn rules() -> Vec<String> {
    vec![
        "  allowed_groups: [admins]".into(),
        r#"  skip_auth_routes: ["^/public/", "GET=^/docs/"]"#.into(),
        r#"  api_routes: ["^/api/"]"#.into(),
        "  skip_preflight: true".into(),
    ]
}

struct World {
    idp: TestServer,
    up: TestServer,
    gate: Authgate,
    client: reqwest::Client,
}

/// authgate whose `trusted_proxies` is `trusted` (the test calls from
/// 127.0.0.1).
async fn world(trusted: &str) -> World {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    cfg.server
        .push(format!("  trusted_proxies: [\"{trusted}\"]"));
    cfg.authorization = rules();
    let gate = Authgate::run(&cfg).await;
    World {
        idp,
        up,
        gate,
        client: client(),
    }
}

/// A browser's headers on the original request (what nginx and Caddy pass
/// on to the auth call), plus the caller's own.
const BROWSER: &[(&str, &str)] = &[("Accept", "text/html"), ("Host", "app.example")];

impl World {
    /// `GET /oauth2/auth` with exactly `headers` (and [`BROWSER`]'s).
    async fn auth(&self, headers: &[(&str, &str)]) -> (u16, http::HeaderMap) {
        let all: Vec<(&str, &str)> = BROWSER.iter().chain(headers).copied().collect();
        raw_get(self.gate.addr(), "/oauth2/auth", &all).await
    }

    /// A session cookie header for `user`, signed in through the proxy.
    async fn session(&self, user: &str) -> String {
        let mut jar = Jar::default();
        let cb = login(&self.client, &mut jar, &self.gate.url("/"), user).await;
        assert_eq!(cb.status(), 302, "callback for {user}");
        jar.header()
    }
}

fn identity_headers(h: &http::HeaderMap) -> Vec<&str> {
    IDENTITY
        .iter()
        .copied()
        .filter(|n| h.contains_key(*n))
        .collect()
}

/// A skipped original request: 202, no identity headers, no cookies.
#[track_caller]
fn assert_skipped((status, h): &(u16, http::HeaderMap), what: &str) {
    assert_eq!(*status, 202, "{what}: {h:?}");
    assert!(identity_headers(h).is_empty(), "{what}: {h:?}");
    assert!(!h.contains_key("set-cookie"), "{what}: {h:?}");
}

/// A protected original request of an anonymous caller: 401 with a challenge.
#[track_caller]
fn assert_protected((status, h): &(u16, http::HeaderMap), what: &str) {
    assert_eq!(*status, 401, "{what}: {h:?}");
    assert!(h.contains_key("www-authenticate"), "{what}: {h:?}");
    assert!(!h.contains_key("location"), "{what}: {h:?}");
}

const PREFLIGHT: &[(&str, &str)] = &[
    ("Origin", "https://spa.example"),
    ("Access-Control-Request-Method", "POST"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_caller_gets_the_skip_rules_applied_to_the_original_request() {
    let w = world("127.0.0.1/32").await;
    const SKIPPED: &str = r#"authgate_requests_total{decision="skipped",listener="proxy"}"#;
    let skipped = |m: String| metric(&m, SKIPPED).unwrap_or(0.0);
    let before = skipped(w.gate.metrics().await);
    // Each caller's own headers, the same public path.
    for (what, headers) in [
        (
            "Traefik / Caddy",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/public/a?x=1"),
            ][..],
        ),
        (
            "nginx",
            &[
                ("X-Original-Method", "GET"),
                ("X-Original-URI", "/public/a?x=1"),
            ],
        ),
        (
            "ingress-nginx",
            &[("X-Original-URL", "https://app.example/public/a?x=1")],
        ),
        (
            "all at once, agreeing",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Uri", "/public/a?x=1"),
                ("X-Original-URI", "/public/a?x=1"),
                ("X-Original-URL", "https://app.example/public/a?x=1"),
                ("X-Forwarded-Host", "app.example"),
            ],
        ),
    ] {
        assert_skipped(&w.auth(headers).await, what);
    }
    // The original's path, not the call's: a protected one stays protected.
    assert_protected(
        &w.auth(&[("X-Forwarded-Method", "GET"), ("X-Forwarded-Uri", "/admin")])
            .await,
        "protected path",
    );
    // Same normalisation and ambiguity rules as the proxy.
    assert_protected(
        &w.auth(&[("X-Forwarded-Uri", "/public/../admin")]).await,
        "dot segments",
    );
    assert_protected(
        &w.auth(&[("X-Forwarded-Uri", "/public/..;/admin")]).await,
        "ambiguous",
    );
    assert_protected(
        &w.auth(&[("X-Forwarded-Uri", "/admin?next=/public/")]).await,
        "query",
    );
    // The echo upstream is never asked: /oauth2/auth is authgate's own.
    assert!(w.up.seen().is_empty());
    // Counted as skipped, once each (metrics are recorded as the answer
    // goes out, so poll).
    let counted = eventually(Duration::from_secs(5), "4 skipped requests", || async {
        let n = skipped(w.gate.metrics().await) - before;
        (n >= 4.0).then_some(n)
    })
    .await;
    assert_eq!(counted, 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_rules_and_preflights_use_the_original_method() {
    let w = world("127.0.0.1/32").await;
    assert_skipped(
        &w.auth(&[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/docs/a"),
        ])
        .await,
        "GET=^/docs/ for a GET",
    );
    assert_skipped(
        &w.auth(&[("X-Original-Method", "get"), ("X-Original-URI", "/docs/a")])
            .await,
        "methods match whatever their case, as on the proxy",
    );
    assert_protected(
        &w.auth(&[
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/docs/a"),
        ])
        .await,
        "GET=^/docs/ for a POST",
    );
    // No method reported: an nginx subrequest is a GET whatever the
    // original was, so no METHOD= route applies.
    assert_protected(
        &w.auth(&[("X-Forwarded-Uri", "/docs/a")]).await,
        "GET=^/docs/ without a method",
    );
    // A CORS preflight for a protected API route.
    let preflight: Vec<(&str, &str)> = [
        ("X-Forwarded-Method", "OPTIONS"),
        ("X-Forwarded-Uri", "/api/items"),
    ]
    .iter()
    .chain(PREFLIGHT)
    .copied()
    .collect();
    assert_skipped(&w.auth(&preflight).await, "preflight with skip_preflight");
    // Not a preflight: the method, or the CORS headers, are missing.
    assert_protected(
        &w.auth(&[
            ("X-Forwarded-Method", "OPTIONS"),
            ("X-Forwarded-Uri", "/api/items"),
        ])
        .await,
        "OPTIONS without CORS headers",
    );
    let no_method: Vec<(&str, &str)> = [("X-Forwarded-Uri", "/api/items")]
        .iter()
        .chain(PREFLIGHT)
        .copied()
        .collect();
    assert_protected(&w.auth(&no_method).await, "CORS headers without OPTIONS");
    // The API route itself: 401 (never a redirect), whatever the Accept.
    assert_protected(
        &w.auth(&[
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/api/items"),
        ])
        .await,
        "api route",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_disagree_skip_nothing() {
    let w = world("127.0.0.1/32").await;
    for (what, headers) in [
        (
            "two paths",
            &[
                ("X-Forwarded-Uri", "/admin"),
                ("X-Original-URI", "/public/a"),
            ][..],
        ),
        (
            "the URL's path",
            &[
                ("X-Original-URI", "/public/a"),
                ("X-Original-URL", "https://app.example/admin"),
            ],
        ),
        (
            "the URL's host",
            &[
                ("X-Forwarded-Host", "app.example"),
                ("X-Original-URL", "https://other.example/public/a"),
            ],
        ),
        (
            "two methods",
            &[
                ("X-Forwarded-Method", "POST"),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Uri", "/docs/a"),
            ],
        ),
        (
            "a malformed one",
            &[
                ("X-Forwarded-Uri", "/public/a"),
                ("X-Original-URI", "a:/public/a"),
            ],
        ),
    ] {
        assert_protected(&w.auth(headers).await, what);
    }
    // A preflight whose method two headers report differently.
    let h: Vec<(&str, &str)> = [
        ("X-Forwarded-Method", "OPTIONS"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/api/items"),
    ]
    .iter()
    .chain(PREFLIGHT)
    .copied()
    .collect();
    assert_protected(&w.auth(&h).await, "preflight, two methods");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_users_get_identity_only_on_protected_originals() {
    let w = world("127.0.0.1/32").await;
    let alice = w.session("alice").await;
    let (status, h) = w
        .auth(&[
            ("Cookie", &alice),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/admin"),
        ])
        .await;
    assert_eq!(status, 202);
    assert_eq!(identity_headers(&h), IDENTITY, "{h:?}");
    assert_eq!(h["x-auth-request-email"], "alice@example.com");
    // A skipped original: no identity, even for her.
    assert_skipped(
        &w.auth(&[
            ("Cookie", &alice),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Uri", "/public/a"),
        ])
        .await,
        "alice on a public path",
    );
    // bob (not in admins; his browser login is refused at the callback),
    // with his ID token as a bearer: refused on a protected original, let
    // through unauthenticated on a public one.
    let token = id_token(&w.idp, &w.gate.url("/oauth2/callback"), "bob").await;
    let bob = format!("Bearer {token}");
    let (status, h) = w
        .auth(&[("Authorization", &bob), ("X-Forwarded-Uri", "/admin")])
        .await;
    assert_eq!(status, 403, "{h:?}");
    assert_skipped(
        &w.auth(&[("Authorization", &bob), ("X-Forwarded-Uri", "/public/a")])
            .await,
        "bob on a public path",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_callers_original_request_headers_are_ignored() {
    // 127.0.0.1 is not in 10.0.0.0/8.
    let w = world("10.0.0.0/8").await;
    let preflight: Vec<(&str, &str)> = [
        ("X-Forwarded-Method", "OPTIONS"),
        ("X-Forwarded-Uri", "/api/items"),
    ]
    .iter()
    .chain(PREFLIGHT)
    .copied()
    .collect();
    for (what, headers) in [
        (
            "Traefik / Caddy",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/public/a"),
            ][..],
        ),
        ("nginx", &[("X-Original-URI", "/public/a")]),
        (
            "ingress-nginx",
            &[("X-Original-URL", "https://app.example/public/a")],
        ),
        (
            "METHOD= route",
            &[
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Uri", "/docs/a"),
            ],
        ),
        ("preflight", &preflight),
    ] {
        assert_protected(&w.auth(headers).await, what);
    }
    // The call itself still works as always.
    let alice = w.session("alice").await;
    let (status, h) = w
        .auth(&[("Cookie", &alice), ("X-Forwarded-Uri", "/public/a")])
        .await;
    assert_eq!(status, 202);
    assert_eq!(identity_headers(&h), IDENTITY, "{h:?}");
}
