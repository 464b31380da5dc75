//! OpenTelemetry tracing (`telemetry.otlp_endpoint`) against the real binary
//! and a real OTLP/gRPC receiver (the OTLP `TraceService` served by tonic in
//! this test): every front end (proxy, `/oauth2/auth`, ext_authz HTTP and
//! gRPC) exports one server span per request that continues the incoming
//! W3C `traceparent` or B3 trace; the upstream gets a `traceparent` of the
//! same trace whose parent is authgate's span, in place of the client's; an
//! unsampled incoming parent is not exported; no span carries a query,
//! cookie or token; the decision log carries the trace id; `SIGTERM`
//! flushes the queue; a dead collector never fails a request and is logged
//! once. With tracing off the client's trace headers go upstream untouched.
//! Inside a request, the IdP calls (token), the Redis session store's
//! commands and the upstream request are client spans under its span,
//! without a code, token, cookie, key or client secret.

use crate::redis_servers;
use crate::support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{Authgate, GateConfig, Jar, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::Mutex;
use serde_json::Value;

/// One exported span, flattened with its resource's `service.name`.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    attrs: HashMap<String, String>,
    events: usize,
}

impl Got {
    fn attr(&self, key: &str) -> &str {
        self.attrs.get(key).map(String::as_str).unwrap_or("")
    }
}

/// The OTLP receiver: records every span it is sent.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Got>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .as_ref()
                .map(|r| attrs(&r.attributes))
                .and_then(|a| a.get("service.name").cloned())
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push(Got {
                        service: service.clone(),
                        name: s.name.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        kind: s.kind,
                        attrs: attrs(&s.attributes),
                        events: s.events.len(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

impl Receiver {
    /// Serves the OTLP trace service on a free loopback port.
    async fn start() -> (Receiver, u16, tokio::task::JoinHandle<()>) {
        let port = support::free_port();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        let receiver = Receiver::default();
        let service = TraceServiceServer::new(receiver.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        (receiver, port, task)
    }

    fn spans(&self) -> Vec<Got> {
        self.0.lock().clone()
    }

    /// Waits for the request (server) span of trace `trace_id` (exported
    /// every few seconds); its child spans are left out.
    async fn span_of(&self, trace_id: &str) -> Got {
        support::eventually(
            Duration::from_secs(30),
            &format!("the request span of trace {trace_id}"),
            || async {
                self.spans()
                    .into_iter()
                    .find(|s| s.trace_id == trace_id && s.name == "authgate.request")
            },
        )
        .await
    }
}

/// `00-<trace>-<span>-<flags>` split.
fn traceparent_parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "traceparent {tp}");
    assert_eq!(p[0], "00", "{tp}");
    (p[1].into(), p[2].into(), p[3].into())
}

/// The one `traceparent` the upstream got (the echo's JSON body).
fn upstream_traceparent(echo: &Value) -> String {
    let all = support::echoed_header(echo, "traceparent");
    assert_eq!(all.len(), 1, "exactly one traceparent upstream: {echo}");
    all[0].clone()
}

const PARENT: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str, flags: &str) -> String {
    format!("00-{trace}-{PARENT}-{flags}")
}

/// The decision log lines (JSON) on stderr.
fn access_lines(gate: &Authgate) -> Vec<Value> {
    gate.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "authgate::access")
        .collect()
}

fn config(idp: u16, echo: u16) -> GateConfig {
    let mut cfg = GateConfig::new(idp, &[("/", echo)]);
    cfg.server = vec![
        format!("  ext_authz_http: 127.0.0.1:{}", support::free_port()),
        format!("  ext_authz_grpc: 127.0.0.1:{}", support::free_port()),
    ];
    cfg
}

fn port_of(cfg: &GateConfig, key: &str) -> u16 {
    let line = cfg.server.iter().find(|l| l.contains(key)).unwrap();
    line.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_front_end_continues_the_trace_and_the_upstream_gets_authgates_span() {
    let (otlp, otlp_port, _receiver) = Receiver::start().await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = config(idp.port(), echo.port());
    let (http_port, grpc_port) = (
        port_of(&cfg, "ext_authz_http"),
        port_of(&cfg, "ext_authz_grpc"),
    );
    let yaml = format!(
        "{}telemetry:\n  access_log: true\n  otlp_endpoint: http://127.0.0.1:{otlp_port}\n  \
service_name: authgate-under-test\npolicies:\n  - name: app-admins\n    paths: [\"^/app/\"]\n    \
allowed_groups: [admins]\n",
        cfg.yaml()
    );
    let gate = Authgate::run_yaml_json_logs(&cfg, &yaml).await;
    let client = support::client();
    let app = format!("127.0.0.1:{}", cfg.port);

    let mut alice = Jar::default();
    let r = support::login(&client, &mut alice, &gate.url("/app/start"), "alice").await;
    assert_eq!(r.status(), 302, "signed in, sent back to the page");
    let cookie = alice.header();
    let session_value = alice.0.values().next().unwrap().clone();

    // 1. An unsampled incoming parent: the upstream still gets authgate's
    // span in the same trace (not sampled), and nothing is exported.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let r = client
        .get(gate.url("/app/unsampled"))
        .header("cookie", &cookie)
        .header("traceparent", traceparent(unsampled, "00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (t, s, f) = traceparent_parts(&upstream_traceparent(&r.json().await.unwrap()));
    assert_eq!((t.as_str(), f.as_str()), (unsampled, "00"));
    assert_ne!(s, PARENT);

    // 2. The proxy with a sampled W3C parent and secrets in the query.
    let w3c = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = client
        .get(gate.url("/app/page?token=query-secret-1"))
        .header("cookie", &cookie)
        .header("traceparent", traceparent(w3c, "01"))
        .header("tracestate", "vendor=client")
        .header("authorization", "Bearer bearer-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let (t, upstream_parent, f) = traceparent_parts(&upstream_traceparent(&echoed));
    assert_eq!((t.as_str(), f.as_str()), (w3c, "01"));
    assert_ne!(upstream_parent, PARENT, "authgate's span is the parent");
    let proxy = otlp.span_of(w3c).await;
    assert_eq!(proxy.parent, PARENT);
    assert_eq!(proxy.span_id, upstream_parent);
    assert_eq!(proxy.service, "authgate-under-test");
    assert_eq!(proxy.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(proxy.name, "authgate.request");
    assert_eq!(proxy.attr("http.request.method"), "GET");
    assert_eq!(proxy.attr("url.path"), "/app/page");
    assert_eq!(proxy.attr("http.response.status_code"), "200");
    assert_eq!(proxy.attr("authgate.listener"), "proxy");
    assert_eq!(proxy.attr("authgate.decision"), "allowed");
    assert_eq!(proxy.attr("authgate.rule"), "app-admins");

    // 3. No incoming trace: a new root, and the upstream is in it.
    let r = client
        .get(gate.url("/public/x?code=query-secret-2"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (fresh, fresh_parent, _) =
        traceparent_parts(&upstream_traceparent(&r.json().await.unwrap()));
    let root = otlp.span_of(&fresh).await;
    assert_eq!(root.parent, "", "a root span");
    assert_eq!(root.span_id, fresh_parent);
    assert_eq!(root.attr("authgate.decision"), "skipped");

    // 4. B3 (single header, as Istio's Envoy may send): continued, and the
    // upstream's B3 headers are replaced by authgate's span too.
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    let b3_parent = "e457b5a2e4d86bd1";
    let r = client
        .get(gate.url("/app/b3"))
        .header("cookie", &cookie)
        .header("b3", format!("{b3_trace}-{b3_parent}-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let (t, b3_span, _) = traceparent_parts(&upstream_traceparent(&echoed));
    assert_eq!(t, b3_trace);
    assert_eq!(support::echoed_header(&echoed, "x-b3-traceid"), [b3_trace]);
    assert_eq!(
        support::echoed_header(&echoed, "x-b3-spanid"),
        [b3_span.as_str()]
    );
    assert!(support::echoed_header(&echoed, "b3").is_empty(), "{echoed}");
    let span = otlp.span_of(b3_trace).await;
    assert_eq!(span.parent, b3_parent);
    assert_eq!(span.span_id, b3_span);

    // 5. `/oauth2/auth` (forward auth) on the proxy listener, B3 multi.
    let fa_trace = "463ac35c9f6413ad48485a3953bb6124";
    let r = client
        .get(gate.url("/oauth2/auth"))
        .header("cookie", &cookie)
        .header("x-b3-traceid", fa_trace)
        .header("x-b3-spanid", "a2fb4a1d1a96d312")
        .header("x-b3-sampled", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let span = otlp.span_of(fa_trace).await;
    assert_eq!(span.parent, "a2fb4a1d1a96d312");
    assert_eq!(span.attr("url.path"), "/oauth2/auth");
    assert_eq!(span.attr("http.response.status_code"), "202");

    // 6. ext_authz HTTP: Envoy forwards the original request's headers.
    let http_trace = "5b8efff798038103d269b633813fc60c";
    let tp = traceparent(http_trace, "01");
    let (status, _) = support::raw_get(
        ([127, 0, 0, 1], http_port).into(),
        "/app/checked?sig=query-secret-3",
        &[
            ("host", app.as_str()),
            ("cookie", cookie.as_str()),
            ("traceparent", tp.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let span = otlp.span_of(http_trace).await;
    assert_eq!(span.parent, PARENT);
    assert_eq!(span.attr("authgate.listener"), "ext_authz_http");
    assert_eq!(span.attr("url.path"), "/app/checked");
    assert_eq!(span.attr("authgate.decision"), "allowed");

    // 7. ext_authz gRPC: the trace headers inside the CheckRequest.
    let grpc_trace = "0123456789abcdef0123456789abcdef";
    let mut grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap();
    let mut headers = HashMap::new();
    headers.insert("cookie".to_owned(), cookie.clone());
    headers.insert("traceparent".to_owned(), traceparent(grpc_trace, "01"));
    let req = support::check_request(
        "POST",
        app.clone(),
        "/app/grpc?code=query-secret-4",
        headers,
    );
    let resp = grpc.check(req).await.unwrap().into_inner();
    assert_eq!(resp.status.map_or(-1, |s| s.code), 0);
    let span = otlp.span_of(grpc_trace).await;
    assert_eq!(span.parent, PARENT);
    assert_eq!(span.attr("authgate.listener"), "ext_authz_grpc");
    assert_eq!(span.attr("http.request.method"), "POST");
    assert_eq!(span.attr("url.path"), "/app/grpc");
    assert_eq!(span.attr("http.response.status_code"), "200");

    // The unsampled request ended before all of these were exported.
    let spans = otlp.spans();
    assert!(
        !spans.iter().any(|s| s.trace_id == unsampled),
        "an unsampled parent is not exported: {spans:#?}"
    );
    // Nothing secret in any span: no query, cookie, token or header.
    for s in &spans {
        assert_eq!(s.events, 0, "{s:?}");
        let text = format!("{s:?}");
        for secret in ["query-secret", "bearer-secret", session_value.as_str(), "?"] {
            assert!(!text.contains(secret), "{secret} in {s:#?}");
        }
    }
    // The decision log names the trace of each request.
    let lines = access_lines(&gate);
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {lines:#?}"))
            .clone()
    };
    assert_eq!(line("/app/page")["trace_id"], w3c);
    assert_eq!(line("/public/x")["trace_id"], fresh.as_str());
    assert_eq!(line("/app/b3")["trace_id"], b3_trace);
    assert_eq!(line("/app/grpc")["trace_id"], grpc_trace);
    // The log output shows no span of its own.
    assert!(
        !gate.stderr().contains("authgate.request"),
        "{}",
        gate.stderr()
    );
}

/// The request span of trace `trace_id` and, once they all arrived, the
/// spans whose parent it is.
async fn request_and_children(
    otlp: &Receiver,
    trace_id: &str,
    ready: impl Fn(&[Got]) -> bool,
) -> (Got, Vec<Got>) {
    support::eventually(
        Duration::from_secs(30),
        &format!("the request span of trace {trace_id} and its children"),
        || async {
            let spans = otlp.spans();
            let request = spans
                .iter()
                .find(|s| s.trace_id == trace_id && s.name == "authgate.request")?
                .clone();
            let children: Vec<Got> = spans
                .into_iter()
                .filter(|s| s.trace_id == trace_id && s.parent == request.span_id)
                .collect();
            ready(&children).then_some((request, children))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_redis_and_upstream_calls_are_child_spans_without_secrets() {
    if !redis_servers::available() {
        panic!("redis-server is needed: ./dev.sh test installs it");
    }
    let redis = redis_servers::RedisProc::server(&[]).await;
    let (otlp, otlp_port, _receiver) = Receiver::start().await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let yaml = format!(
        "{}headers:\n  pass_authorization: true\nsession:\n  store: redis\n  redis:\n    \
url: \"redis://127.0.0.1:{}/0\"\ntelemetry:\n  otlp_endpoint: http://127.0.0.1:{otlp_port}\n",
        cfg.yaml(),
        redis.port
    );
    let gate = Authgate::run_yaml(&cfg, &yaml).await;
    let client = support::client();

    // The login, its callback in a trace of our own.
    let mut jar = Jar::default();
    let authorize = support::start_login(&client, &mut jar, &gate.url("/app/start")).await;
    let callback = support::login_at_idp(&client, &authorize, "alice").await;
    let code = support::query_param(&callback, "code").expect("a code");
    let login_trace = "1a2b3c4d5e6f708192a3b4c5d6e7f809";
    let r = client
        .get(callback.as_str())
        .header("cookie", jar.header())
        .header("traceparent", traceparent(login_trace, "01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "signed in");
    jar.update(&r);
    let (callback_span, children) = request_and_children(&otlp, login_trace, |c| {
        c.iter().any(|s| s.name == "idp token")
            && c.iter().any(|s| s.attr("db.system.name") == "redis")
    })
    .await;
    assert_eq!(callback_span.parent, PARENT);
    let token = children.iter().find(|s| s.name == "idp token").unwrap();
    assert_eq!(token.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(token.attr("http.request.method"), "POST");
    assert_eq!(token.attr("server.address"), "127.0.0.1");
    assert_eq!(token.attr("server.port"), idp.port().to_string());
    assert!(token.attr("url.path").ends_with("/token"), "{token:?}");
    assert_eq!(token.attr("http.response.status_code"), "200");
    let saved = children
        .iter()
        .find(|s| s.attr("db.system.name") == "redis")
        .unwrap();
    assert_eq!(saved.kind, 3, "SPAN_KIND_CLIENT");
    assert!(!saved.attr("db.operation.name").is_empty(), "{saved:?}");

    // A proxied request: the session from Redis, then the upstream.
    let page_trace = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let r = client
        .get(gate.url("/app/page"))
        .header("cookie", jar.header())
        .header("traceparent", traceparent(page_trace, "01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    let id_token = support::echoed_header(&echoed, "authorization")
        .first()
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_owned))
        .expect("the ID token upstream");
    let (_, children) = request_and_children(&otlp, page_trace, |c| {
        c.iter().any(|s| s.name == "upstream") && c.iter().any(|s| s.name == "GET")
    })
    .await;
    let load = children.iter().find(|s| s.name == "GET").unwrap();
    assert_eq!(load.attr("db.system.name"), "redis");
    assert_eq!(load.attr("db.operation.name"), "GET");
    let upstream = children.iter().find(|s| s.name == "upstream").unwrap();
    assert_eq!(upstream.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(upstream.attr("server.address"), "127.0.0.1");
    assert_eq!(upstream.attr("server.port"), echo.port().to_string());
    assert_eq!(upstream.attr("http.response.status_code"), "200");

    // No secret in any span: not the code, the session cookie, the Redis
    // key (the session id), a token or the client secret.
    let keys = redis.cmd(&["KEYS", "authgate:session:*"]);
    let key = keys.lines().next().unwrap_or_default().trim().to_owned();
    assert!(key.starts_with("authgate:session:"), "{keys}");
    let session_id = key.trim_start_matches("authgate:session:").to_owned();
    let mut secrets = vec![
        code,
        id_token,
        key,
        session_id,
        support::CLIENT_SECRET.to_owned(),
        "eyJ".to_owned(),
    ];
    secrets.extend(jar.0.values().cloned());
    for s in otlp.spans() {
        let text = format!("{s:?}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} in {s:#?}");
        }
        assert!(!text.contains('?'), "a query in {s:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_spans_still_queued() {
    let (otlp, otlp_port, _receiver) = Receiver::start().await;
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let yaml = format!(
        "{}telemetry:\n  otlp_endpoint: http://127.0.0.1:{otlp_port}\n",
        cfg.yaml()
    );
    let mut gate = Authgate::run_yaml(&cfg, &yaml).await;
    let trace = "2c5a0c3e8a0d4c1fb2f5d6e7a8b9c0d1";
    let r = support::client()
        .get(gate.url("/public/last"))
        .header("traceparent", traceparent(trace, "01"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Before the batch's scheduled export (5 s): only the shutdown flush
    // can deliver it now.
    gate.sigterm();
    let status = gate.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}; stderr:\n{}", gate.stderr());
    let span = otlp.span_of(trace).await;
    assert_eq!(span.service, "authgate");
    assert_eq!(span.attr("url.path"), "/public/last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_never_fails_a_request_and_is_logged_once() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    // Nothing listens there.
    let dead = support::free_port();
    let yaml = format!(
        "{}telemetry:\n  otlp_endpoint: http://127.0.0.1:{dead}\n",
        cfg.yaml()
    );
    let mut gate = Authgate::run_yaml(&cfg, &yaml).await;
    let client = support::client();
    let said = |gate: &Authgate| gate.stderr().matches("OTLP trace export failed").count();
    for i in 0..20 {
        let r = client
            .get(gate.url(&format!("/public/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    support::eventually(
        Duration::from_secs(30),
        "the export failure logged",
        || async { (said(&gate) > 0).then_some(()) },
    )
    .await;
    for i in 0..20 {
        let r = client
            .get(gate.url(&format!("/public/after-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    gate.sigterm();
    let status = gate.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}; stderr:\n{}", gate.stderr());
    assert_eq!(said(&gate), 1, "{}", gate.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_off_forwards_the_clients_trace_headers_untouched() {
    let idp = TestServer::idp().await;
    let echo = TestServer::echo("app").await;
    let cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    let gate = Authgate::run(&cfg).await;
    let tp = traceparent("4bf92f3577b34da6a3ce929d0e0e4736", "01");
    let r = support::client()
        .get(gate.url("/public/off"))
        .header("traceparent", &tp)
        .header("tracestate", "vendor=client")
        .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(upstream_traceparent(&echoed), tp);
    assert_eq!(
        support::echoed_header(&echoed, "tracestate"),
        ["vendor=client"]
    );
    assert_eq!(
        support::echoed_header(&echoed, "b3"),
        ["80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"]
    );
}
