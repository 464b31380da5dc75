//! `telemetry.access_log: true` against the real binary with `--log-format
//! json`: one decision line per request on each listener (proxy, ext_authz
//! HTTP, ext_authz gRPC) with the right decision, status and user; never a
//! query string, cookie or token anywhere on stderr; `/ping` and `/ready`
//! left out; an incoming `traceparent`'s trace id carried. The text format
//! (no `--log-format`) carries every contract field too, and the user on
//! the callback, `/oauth2/auth` and `/oauth2/userinfo` lines, but never the
//! query, cookie or bearer token of a request that carries all three.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Authgate, GateConfig, Jar, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const B3_TRACE_ID: &str = "a3ce929d0e0e4736";

/// The decision lines on stderr so far, parsed.
fn access_lines(gate: &Authgate) -> Vec<Value> {
    gate.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "authgate::access")
        .collect()
}

/// Waits until `n` decision lines are written (they are written after the
/// answer, so a client can see its response first).
async fn wait_lines(gate: &Authgate, n: usize) -> Vec<Value> {
    support::eventually(Duration::from_secs(10), "decision lines", || async {
        let lines = access_lines(gate);
        (lines.len() >= n).then_some(lines)
    })
    .await
}

fn the_line<'a>(lines: &'a [Value], listener: &str, path: &str) -> &'a Value {
    let found: Vec<&Value> = lines
        .iter()
        .filter(|l| l["listener"] == listener && l["path"] == path)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one {listener} line for {path}: {lines:#?}"
    );
    found[0]
}

fn assert_line(l: &Value, method: &str, status: u64, decision: &str, user: &str) {
    assert_eq!(l["method"], method, "{l}");
    assert_eq!(l["status"], status, "{l}");
    assert_eq!(l["decision"], decision, "{l}");
    assert_eq!(l["user"], user, "{l}");
    assert!(l["duration_ms"].as_f64().is_some(), "{l}");
    assert!(l["time"].as_str().is_some_and(|t| !t.is_empty()), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_on_each_listener_without_secrets() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let (http_port, grpc_port) = cfg.with_ext_authz();
    cfg.authorization = vec![
        "  allowed_groups: [admins]".into(),
        "  skip_auth_routes: [\"^/public/\"]".into(),
        "  api_routes: [\"^/api/\"]".into(),
    ];
    let yaml = format!(
        "{}telemetry:\n  access_log: true\npolicies:\n  - name: app-admins\n    paths: [\"^/app/\"]\n    allowed_groups: [admins]\n",
        cfg.yaml()
    );
    let gate = Authgate::run_yaml_json_logs(&cfg, &yaml).await;
    let client = support::client();
    let app = format!("127.0.0.1:{}", cfg.port);
    // Readiness polling happened before: probes are never logged.
    assert!(access_lines(&gate).is_empty(), "{}", gate.stderr());
    let mut expected = 0;

    // alice signs in through the proxy: the protected page (302 to the
    // IdP), then the callback whose query carries the code and state.
    let mut alice = Jar::default();
    let authorize =
        support::start_login(&client, &mut alice, &gate.url("/app/home?q=query-secret-1")).await;
    let callback = support::login_at_idp(&client, &authorize, "alice").await;
    let code = support::query_param(&callback, "code").unwrap();
    let state = support::query_param(&callback, "state").unwrap();
    let cb = support::get(&client, &mut alice, callback.as_str(), "text/html").await;
    assert_eq!(cb.status(), 302);
    expected += 2;
    let alice_cookie = alice.header();

    // An allowed request, with a W3C traceparent.
    let r = client
        .get(gate.url("/app/page?token=query-secret-2"))
        .header("cookie", &alice_cookie)
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    expected += 1;
    // Anonymous API call: 401.
    let r = client
        .get(gate.url("/api/items"))
        .header("accept", "application/json")
        .header("x-b3-traceid", B3_TRACE_ID)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    expected += 1;
    // A skipped route, and probes (left out).
    let r = client.get(gate.url("/public/a?x=1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    expected += 1;
    for probe in ["/ping", "/ready"] {
        let r = client.get(gate.url(probe)).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // `/oauth2/auth` on the proxy listener.
    let r = client
        .get(gate.url("/oauth2/auth"))
        .header("cookie", &alice_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    expected += 1;

    // bob signs in (not in admins): refused at the callback.
    let mut bob = Jar::default();
    let r = support::login(&client, &mut bob, &gate.url("/app/bob"), "bob").await;
    assert_eq!(r.status(), 403);
    expected += 2;

    // ext_authz HTTP: Envoy's check for alice's original request.
    let (status, _) = support::raw_get(
        ([127, 0, 0, 1], http_port).into(),
        "/app/checked?sig=query-secret-3",
        &[("host", app.as_str()), ("cookie", alice_cookie.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    expected += 1;
    // Anonymous browser check: a login redirect.
    let (status, _) = support::raw_get(
        ([127, 0, 0, 1], http_port).into(),
        "/app/anon",
        &[("host", app.as_str()), ("accept", "text/html")],
    )
    .await;
    assert_eq!(status, 302);
    expected += 1;

    // ext_authz gRPC: alice, with a traceparent.
    let mut grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap();
    let mut headers = HashMap::new();
    headers.insert("cookie".to_owned(), alice_cookie.clone());
    headers.insert("traceparent".to_owned(), TRACEPARENT.to_owned());
    let req = support::check_request(
        "POST",
        app.clone(),
        "/app/grpc?code=query-secret-4",
        headers,
    );
    let resp = grpc.check(req).await.unwrap().into_inner();
    assert_eq!(resp.status.map_or(-1, |s| s.code), 0);
    expected += 1;

    let lines = wait_lines(&gate, expected).await;
    // Give a stray extra line the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = if access_lines(&gate).len() > lines.len() {
        access_lines(&gate)
    } else {
        lines
    };
    assert_eq!(lines.len(), expected, "{lines:#?}");

    let alice_email = "alice@example.com";
    let l = the_line(&lines, "proxy", "/app/home");
    assert_line(l, "GET", 302, "unauthenticated", "");
    assert_eq!(l["upstream"], "");
    let callbacks = lines.iter().filter(|l| l["path"] == "/oauth2/callback");
    assert_eq!(
        callbacks.filter(|l| l["status"] == 302).count(),
        1,
        "{lines:#?}"
    );
    let l = the_line(&lines, "proxy", "/app/page");
    assert_line(l, "GET", 200, "allowed", alice_email);
    assert_eq!(l["trace_id"], TRACE_ID);
    assert_eq!(l["rule"], "app-admins");
    assert_eq!(l["upstream"], format!("127.0.0.1:{}", echo.port()));
    assert_eq!(l["host"], app);
    let l = the_line(&lines, "proxy", "/api/items");
    assert_line(l, "GET", 401, "unauthenticated", "");
    assert_eq!(l["trace_id"], B3_TRACE_ID);
    let l = the_line(&lines, "proxy", "/public/a");
    assert_line(l, "GET", 200, "skipped", "");
    assert_eq!(l["trace_id"], "");
    assert_eq!(l["rule"], "");
    let l = the_line(&lines, "proxy", "/oauth2/auth");
    assert_eq!(l["status"], 202, "{l}");
    // The user checked, as on the app's own requests.
    assert_eq!(l["user"], alice_email, "{l}");
    assert_eq!(l["rule"], "", "{l}");
    // The callback names who signed in (and who was refused).
    let alice_cb = lines
        .iter()
        .find(|l| l["path"] == "/oauth2/callback" && l["status"] == 302)
        .unwrap();
    assert_eq!(alice_cb["user"], alice_email, "{alice_cb}");
    assert_eq!(alice_cb["rule"], "", "{alice_cb}");
    let bob_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["path"] == "/oauth2/callback" && l["status"] == 403)
        .collect();
    assert_eq!(bob_lines.len(), 1, "{lines:#?}");
    assert_eq!(bob_lines[0]["decision"], "forbidden", "{}", bob_lines[0]);
    assert_eq!(bob_lines[0]["user"], "bob@example.com", "{}", bob_lines[0]);
    let l = the_line(&lines, "ext_authz_http", "/app/checked");
    assert_line(l, "GET", 200, "allowed", alice_email);
    assert_eq!(l["upstream"], "");
    let l = the_line(&lines, "ext_authz_http", "/app/anon");
    assert_line(l, "GET", 302, "unauthenticated", "");
    let l = the_line(&lines, "ext_authz_grpc", "/app/grpc");
    assert_line(l, "POST", 200, "allowed", alice_email);
    assert_eq!(l["rule"], "app-admins");
    assert_eq!(l["trace_id"], TRACE_ID);
    assert!(lines
        .iter()
        .all(|l| l["path"] != "/ping" && l["path"] != "/ready"));

    // No query string, cookie or token anywhere on stderr.
    let stderr = gate.stderr();
    let mut secrets = vec![
        "query-secret-1".to_owned(),
        "query-secret-2".to_owned(),
        "query-secret-3".to_owned(),
        "query-secret-4".to_owned(),
        code,
        state,
    ];
    for jar in [&alice, &bob] {
        for value in jar.0.values() {
            if value.len() >= 8 {
                secrets.push(value.clone());
            }
        }
    }
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "{s} is on stderr:\n{stderr}");
    }
    for l in &lines {
        assert!(!l.to_string().contains('?'), "a query string in {l}");
    }
}

/// The contract's fields, in its order.
const FIELDS: [&str; 12] = [
    "time",
    "listener",
    "method",
    "host",
    "path",
    "status",
    "decision",
    "rule",
    "user",
    "upstream",
    "duration_ms",
    "trace_id",
];

/// The text-format decision lines on stderr so far, without terminal
/// colours, each as its `key=value` fields (an empty value is `key=`).
fn text_lines(gate: &Authgate) -> Vec<(String, HashMap<String, String>)> {
    let ansi = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    gate.stderr()
        .lines()
        .map(|l| ansi.replace_all(l, "").into_owned())
        .filter(|l| l.contains("authgate::access"))
        .map(|l| {
            let fields = l
                .split_whitespace()
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            (l, fields)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_carry_every_field_and_the_user_but_no_secret() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.authorization = vec![
        "  allowed_groups: [admins]".into(),
        "  bearer_tokens: true".into(),
        "  skip_auth_routes: [\"^/public/\"]".into(),
    ];
    // A policy over every path: `rule` names it on the app's requests only,
    // not on authgate's own endpoints nor on what skip_auth_routes skips.
    let yaml = format!(
        "{}telemetry:\n  access_log: true\npolicies:\n  - name: everyone\n    email_domains: [example.com]\n",
        cfg.yaml()
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;
    let client = support::client();

    // alice signs in: the callback's line names her.
    let mut alice = Jar::default();
    let done = support::login(&client, &mut alice, &gate.url("/app/home"), "alice").await;
    assert_eq!(done.status(), 302);
    let session = alice.header();
    let jwt = support::id_token(&idp, &gate.url("/oauth2/callback"), "alice").await;

    // One request carrying a query secret, cookies and a bearer token.
    let cookie = format!("{session}; theme=cookie-secret-6");
    let r = client
        .get(gate.url("/app/page?access_token=query-secret-5"))
        .header("cookie", &cookie)
        .header("authorization", format!("Bearer {jwt}"))
        .header("traceparent", TRACEPARENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for path in [
        "/oauth2/auth?rd=query-secret-7",
        "/oauth2/userinfo?x=query-secret-8",
    ] {
        let r = client
            .get(gate.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let r = client
        .get(gate.url("/oauth2/userinfo"))
        .header("authorization", format!("Bearer {jwt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .get(gate.url("/public/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // start, callback, page, auth, userinfo (cookie), userinfo (bearer), public.
    let lines = support::eventually(Duration::from_secs(10), "text decision lines", || async {
        let lines = text_lines(&gate);
        (lines.len() >= 7).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 7, "{lines:#?}");
    for (line, fields) in &lines {
        for f in FIELDS {
            assert!(fields.contains_key(f), "{f}= missing in {line}");
        }
        assert_eq!(fields["listener"], "proxy", "{line}");
        assert!(fields["duration_ms"].parse::<f64>().is_ok(), "{line}");
        assert!(fields["status"].parse::<u16>().is_ok(), "{line}");
        assert!(!fields["time"].is_empty(), "{line}");
    }
    let by_path = |path: &str| -> Vec<&HashMap<String, String>> {
        lines
            .iter()
            .filter(|(_, f)| f["path"] == path)
            .map(|(_, f)| f)
            .collect()
    };
    let alice_email = "alice@example.com";
    let cb = by_path("/oauth2/callback");
    assert_eq!(cb.len(), 1, "{lines:#?}");
    assert_eq!(cb[0]["user"], alice_email);
    assert_eq!(cb[0]["status"], "302");
    let page = by_path("/app/page");
    assert_eq!(page.len(), 1, "{lines:#?}");
    assert_eq!(page[0]["user"], alice_email);
    assert_eq!(page[0]["decision"], "allowed");
    assert_eq!(page[0]["method"], "GET");
    assert_eq!(page[0]["trace_id"], TRACE_ID);
    assert_eq!(page[0]["rule"], "everyone");
    assert_eq!(page[0]["upstream"], format!("127.0.0.1:{}", echo.port()));
    let auth = by_path("/oauth2/auth");
    assert_eq!(auth.len(), 1, "{lines:#?}");
    assert_eq!(auth[0]["user"], alice_email);
    assert_eq!(auth[0]["status"], "202");
    let userinfo = by_path("/oauth2/userinfo");
    assert_eq!(userinfo.len(), 2, "{lines:#?}");
    for u in &userinfo {
        assert_eq!(u["user"], alice_email);
        assert_eq!(u["status"], "200");
        // Tracing off: the field is there, empty.
        assert_eq!(u["trace_id"], "");
    }
    let start = by_path("/app/home");
    assert_eq!(start.len(), 1, "{lines:#?}");
    assert_eq!(start[0]["user"], "", "nobody signed in yet");
    assert_eq!(start[0]["rule"], "everyone");
    for (path, n) in [
        ("/oauth2/callback", 1),
        ("/oauth2/userinfo", 2),
        ("/public/logo.png", 1),
    ] {
        let found = by_path(path);
        assert_eq!(found.len(), n, "{path}: {lines:#?}");
        for l in found {
            assert_eq!(l["rule"], "", "{path}: {l:?}");
        }
    }
    assert_eq!(by_path("/public/logo.png")[0]["decision"], "skipped");
    // `/oauth2/auth` is decided like the request it checks: the policy applies.
    assert_eq!(by_path("/oauth2/auth")[0]["rule"], "everyone");

    // Never the query, a cookie or the token, anywhere on stderr.
    let stderr = gate.stderr();
    let mut secrets: Vec<String> = vec![
        "query-secret-5".into(),
        "query-secret-7".into(),
        "query-secret-8".into(),
        "cookie-secret-6".into(),
        jwt.clone(),
    ];
    secrets.extend(jwt.split('.').map(str::to_owned));
    secrets.extend(alice.0.values().filter(|v| v.len() >= 8).cloned());
    for s in &secrets {
        assert!(!stderr.contains(s.as_str()), "{s} is on stderr:\n{stderr}");
    }
    for (line, _) in &lines {
        assert!(!line.contains('?'), "a query string in {line}");
    }
}
