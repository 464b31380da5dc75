//! `telemetry.access_log: true` against the real binary with `--log-format
//! json`: one decision line per request on each listener (proxy, ext_authz
//! HTTP, ext_authz gRPC) with the right decision, status and user; never a
//! query string, cookie or token anywhere on stderr; `/ping` and `/ready`
//! left out; an incoming `traceparent`'s trace id carried.

use crate::support;

use std::collections::HashMap;
use std::time::Duration;

use crate::support::{Authgate, GateConfig, Jar, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{
    attribute_context, AttributeContext, CheckRequest,
};
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
    let http_port = support::free_port();
    let grpc_port = support::free_port();
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.server = vec![
        format!("  ext_authz_http: 127.0.0.1:{http_port}"),
        format!("  ext_authz_grpc: 127.0.0.1:{grpc_port}"),
    ];
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
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "POST".into(),
                    host: app.clone(),
                    path: "/app/grpc?code=query-secret-4".into(),
                    scheme: "http".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
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
    let bob_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| l["path"] == "/oauth2/callback" && l["status"] == 403)
        .collect();
    assert_eq!(bob_lines.len(), 1, "{lines:#?}");
    assert_eq!(bob_lines[0]["decision"], "forbidden", "{}", bob_lines[0]);
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
