//! The proxy foundation seen from outside: the real binary between a client
//! and real upstream servers, with the embedded IdP for discovery.

use std::time::Duration;

use crate::support::*;

fn is_identity(name: &str) -> bool {
    let n = name.to_ascii_lowercase().replace('_', "-");
    IDENTITY.contains(&n.as_str())
}

/// One IdP, one `/` upstream, authgate in front.
async fn basic() -> (TestServer, TestServer, Authgate) {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("root").await;
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", up.port())])).await;
    (idp, up, gate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_path_prefix_picks_the_upstream_and_forwards_headers() {
    let idp = TestServer::idp().await;
    let root = TestServer::echo("root").await;
    let api = TestServer::echo("api").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", root.port()), ("/api", api.port())]);
    cfg.authorization = vec!["  skip_auth_routes: [\"^/public/\", \"^/api/\"]".into()];
    let gate = Authgate::run(&cfg).await;
    let c = client();

    let body = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 200);
        echo_json(&r.text().await.unwrap())
    };
    let a = body(
        c.get(gate.url("/api/items?x=1"))
            .header("x-custom", "hello")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a["upstream"], "api");
    assert_eq!(a["target"], "/api/items?x=1");
    assert_eq!(echoed_header(&a, "x-custom"), ["hello"]);
    // The client is not a trusted proxy: its X-Forwarded-* are replaced.
    assert_eq!(echoed_header(&a, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&a, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        echoed_header(&a, "x-forwarded-host"),
        [format!("127.0.0.1:{}", gate.port)]
    );

    let r = body(c.get(gate.url("/public/other")).send().await.unwrap()).await;
    assert_eq!(r["upstream"], "root");
    assert_eq!(api.seen().len(), 1);
    assert_eq!(root.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_identity_headers_in_any_spelling_are_stripped_on_skip_routes() {
    let (_idp, up, gate) = basic().await;
    let request = format!(
        "GET /public/page HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
X_Forwarded_User: mallory\r\n\
X-AUTH-REQUEST-EMAIL: mallory@evil.example\r\n\
x-Auth-Request-Email: mallory2@evil.example\r\n\
X_Auth_Request_Email: mallory3@evil.example\r\n\
x-forwarded-groups: admins\r\n\
X-Auth-Request-Preferred-Username: root\r\n\
X-Kept: yes\r\n\
Connection: close\r\n\r\n",
        port = gate.port
    );
    let (status, text) = raw_exchange(gate.addr(), &request).await;
    assert_eq!(status, 200, "{text}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let forged: Vec<_> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| is_identity(n))
        .collect();
    assert!(
        forged.is_empty(),
        "identity headers reached upstream: {forged:?}"
    );
    assert_eq!(seen[0].header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_api_request_gets_401_and_is_not_forwarded() {
    let (_idp, up, gate) = basic().await;
    let r = client()
        .get(gate.url("/private"))
        .header("accept", "application/json")
        .header("x-forwarded-email", "alice@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_page_request_redirects_to_idp_with_state_nonce_pkce_and_csrf_cookie() {
    let (idp, up, gate) = basic().await;
    let r = client()
        .get(gate.url("/private?q=1"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    assert_eq!(loc.port(), Some(idp.port()));
    assert_eq!(loc.path(), "/authorize");
    for key in ["state", "nonce", "code_challenge"] {
        let v = query_param(&loc, key).unwrap_or_default();
        assert!(v.len() >= 16, "{key} missing or short in {loc}");
    }
    assert_eq!(
        query_param(&loc, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(query_param(&loc, "client_id").as_deref(), Some(CLIENT_ID));
    let cookies = set_cookies(&r);
    assert!(
        cookies.iter().any(|c| c.starts_with("_oauth2_proxy_csrf")),
        "no CSRF cookie in {cookies:?}"
    );
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_gives_502_and_process_keeps_serving() {
    let idp = TestServer::idp().await;
    let dead = free_port();
    let gate = Authgate::run(&GateConfig::new(idp.port(), &[("/", dead)])).await;
    let c = client();
    let before = gate.metrics().await;
    assert_eq!(metric(&before, "authgate_upstream_errors_total"), Some(0.0));

    let r = c.get(gate.url("/public/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body = r.text().await.unwrap();
    assert!(body.len() < 200 && body.contains("upstream"), "{body}");

    let ping = c.get(gate.url("/ping")).send().await.unwrap();
    assert_eq!(ping.status(), 200);
    assert_eq!(ping.text().await.unwrap(), "OK");
    let after = gate.metrics().await;
    let errors = metric(&after, "authgate_upstream_errors_total").unwrap();
    assert!(errors >= 1.0, "upstream errors not counted:\n{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_decision_after_traffic() {
    let (_idp, _up, gate) = basic().await;
    let c = client();
    let skipped = r#"authgate_requests_total{decision="skipped",listener="proxy"}"#;
    let unauth = r#"authgate_requests_total{decision="unauthenticated",listener="proxy"}"#;
    let before = gate.metrics().await;
    assert_eq!(metric(&before, "authgate_upstream_errors_total"), Some(0.0));
    let skipped0 = metric(&before, skipped).unwrap_or(0.0);
    let unauth0 = metric(&before, unauth).unwrap_or(0.0);

    let r = c.get(gate.url("/public/a")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        let r = c
            .get(gate.url("/private"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The counter is bumped in Pingora's logging phase, after the answer.
    let after = eventually(Duration::from_secs(10), "request metrics", || async {
        let m = gate.metrics().await;
        (metric(&m, unauth) == Some(unauth0 + 2.0)).then_some(m)
    })
    .await;
    assert_eq!(metric(&after, skipped), Some(skipped0 + 1.0), "{after}");
    assert!(after.contains("authgate_request_duration_seconds_bucket{"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_on_skip_route_echoes_bytes() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (_idp, up, gate) = basic().await;
    let mut s = tokio::net::TcpStream::connect(gate.addr()).await.unwrap();
    let req = format!(
        "GET /public/ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gate.port
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("no 101 in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");

    for msg in [&b"hello through authgate"[..], &[0u8, 1, 2, 255, 254][..]] {
        s.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut back))
            .await
            .expect("no echo in time")
            .unwrap();
        assert_eq!(back, msg);
    }
    assert_eq!(up.seen().len(), 1);
    assert_eq!(up.seen()[0].header("upgrade").as_deref(), Some("websocket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_request_finish_and_exits_zero() {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("root").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    cfg.shutdown_grace = "3s";
    let mut gate = Authgate::run(&cfg).await;

    let url = gate.url("/public/slow");
    let in_flight = tokio::spawn(async move { client().get(url).send().await });
    // Only signal once the upstream holds the request.
    eventually(
        Duration::from_secs(10),
        "the slow request upstream",
        || async { (!up.seen().is_empty()).then_some(()) },
    )
    .await;
    gate.sigterm();

    let resp = in_flight.await.unwrap().expect("in-flight request failed");
    assert_eq!(resp.status(), 200);
    let echo = echo_json(&resp.text().await.unwrap());
    assert_eq!(echo["target"], "/public/slow");
    // Pingora waits the grace period, then gives runtimes as long again.
    let status = gate.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "exit status {status}; stderr:\n{}",
        gate.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_64_kib_get_431_and_are_not_forwarded() {
    let (_idp, up, gate) = basic().await;
    let mut req = client().get(gate.url("/public/big"));
    let filler = "a".repeat(4096);
    for i in 0..20 {
        req = req.header(format!("x-filler-{i}"), filler.as_str());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 431);
    // Just under the limit still goes through, so the limit is what refused it.
    let mut req = client().get(gate.url("/public/small"));
    for i in 0..10 {
        req = req.header(format!("x-filler-{i}"), filler.as_str());
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let seen = up.seen();
    assert_eq!(
        seen.len(),
        1,
        "{:?}",
        seen.iter().map(|s| &s.target).collect::<Vec<_>>()
    );
    assert_eq!(seen[0].target, "/public/small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_targets_not_starting_with_a_slash_or_not_utf8_get_400_and_never_reach_upstream() {
    let idp = TestServer::idp().await;
    let up = TestServer::echo("root").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", up.port())]);
    // Pingora's parsed Uri of such targets is `/` or lossy: a skip route
    // matching it must not let the raw target through.
    cfg.authorization = vec!["  skip_auth_routes: [\"^/$\", \"^/public/\"]".into()];
    let gate = Authgate::run(&cfg).await;
    let request = |target: &[u8]| {
        let mut r = b"GET ".to_vec();
        r.extend_from_slice(target);
        r.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                gate.port
            )
            .as_bytes(),
        );
        r
    };
    for target in [
        &b"foo:/admin"[..],
        b"admin",
        b"admin?x=1",
        b"\xff/admin",
        b"/public/\xff",
        b"/public/\xe9t\xe9",
    ] {
        let (status, text) = raw_exchange(gate.addr(), request(target)).await;
        let shown = String::from_utf8_lossy(target);
        assert_eq!(status, 400, "{shown}: {text}");
        assert!(up.seen().is_empty(), "{shown} was proxied: {:?}", up.seen());
    }
    // The skip routes themselves still work, so they are not what refused.
    for target in [&b"/"[..], b"/public/ok"] {
        let (status, text) = raw_exchange(gate.addr(), request(target)).await;
        assert_eq!(status, 200, "{text}");
    }
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_app_cookies_reach_upstream_without_authgates_cookies() {
    let (_idp, up, gate) = basic().await;
    let mut request = format!(
        "GET /public/page HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
        gate.port
    )
    .into_bytes();
    request.extend_from_slice(b"Cookie: app=1; pref=\xe9; _oauth2_proxy=x\r\n");
    request.extend_from_slice(b"Cookie: _oauth2_proxy_csrf_abc=y; lang=\xc3\xa9\r\n\r\n");
    let (status, text) = raw_exchange(gate.addr(), request).await;
    assert_eq!(status, 200, "{text}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header_bytes("cookie"),
        [b"app=1; pref=\xe9".to_vec(), b"lang=\xc3\xa9".to_vec()]
    );
}
