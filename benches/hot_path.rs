//! The hot path: what every authenticated request costs before it is
//! proxied. Run with `cargo bench --bench hot_path`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};

use authgate::authz::{admit, Decision, Identity, Listener, Received, Trust};
use authgate::clock::unix_now;
use authgate::gate::Gate;
use authgate::metrics::Metrics;
use authgate::session::cookies::CookieJar;
use authgate::session::Session;

const CONFIG: &str = r#"
provider:
  issuer_url: http://127.0.0.1:9
  client_id: bench
  client_secret: bench-secret
cookie:
  secret: 0123456789abcdef0123456789abcdef
  secure: false
authorization:
  allowed_groups: [admins]
  skip_auth_routes: ["^/public/"]
upstreams:
  - path: /
    url: http://127.0.0.1:9
"#;

/// A session the size a real IdP produces: three tokens of about 1 KB.
fn session() -> Session {
    let token = "x".repeat(900);
    Session {
        identity: Identity {
            user: "alice@example.com".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec!["admins".into(), "devs".into()],
        }
        .into(),
        sub: "alice".into(),
        sid: Some("sid-1".into()),
        id_token: Some(token.clone().into()),
        access_token: Some(token.clone().into()),
        refresh_token: Some(token.into()),
        refreshed_at: unix_now(),
        expires_at: unix_now() + 3600,
        claims: None,
    }
}

fn bench(c: &mut Criterion) {
    let cfg = authgate::config::load_str(CONFIG).expect("bench config");
    let gate = Gate::new(Arc::new(cfg), Metrics::new().expect("metrics")).expect("gate");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let empty = HeaderMap::new();
    let jar = CookieJar::from_headers(&empty);
    let set = rt
        .block_on(gate.store.save(&session(), None, "app.example.com", &jar))
        .expect("save");
    let cookie = set
        .iter()
        .map(|v| {
            v.to_str()
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
    headers.insert("accept", HeaderValue::from_static("text/html"));

    // What `request_filter` does per request: the request edge, then the decision.
    let view = |headers: &HeaderMap, uri: &'static str| {
        let received = Received {
            listener: Listener::Proxy,
            method: "GET",
            target: uri.as_bytes(),
            authority: "app.example.com",
            scheme: Some("https"),
            headers,
            client_ip: None,
            path_prefix: "",
        };
        let admitted = admit(received, Trust::Proxies(&[])).expect("admitted");
        rt.block_on(gate.decide(&admitted.view()))
    };
    assert!(matches!(view(&headers, "/dashboard"), Decision::Allow(_)));

    c.bench_function("decide/valid_session_allow", |b| {
        b.iter(|| black_box(view(black_box(&headers), "/dashboard?from=now-1h")))
    });
    let api = {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("application/json"));
        h
    };
    c.bench_function("decide/anonymous_api_401", |b| {
        b.iter(|| black_box(view(black_box(&api), "/api/v1/query")))
    });
    c.bench_function("decide/skip_route", |b| {
        b.iter(|| black_box(view(black_box(&api), "/public/logo.svg")))
    });
    // What `upstream_request_filter` applies: identity set, spoofed names, own cookies stripped.
    let Decision::Allow(grant) = view(&headers, "/dashboard") else {
        unreachable!("allowed above")
    };
    c.bench_function("edits/valid_session_allow", |b| {
        b.iter(|| black_box(gate.upstream_edits(Some(grant.clone()), black_box(&headers))))
    });
    let sealed = gate.codec.seal(
        b"_oauth2_proxy",
        &serde_json::to_vec(&session()).expect("json"),
    );
    c.bench_function("codec/open_3kb_session", |b| {
        b.iter(|| black_box(gate.codec.open(b"_oauth2_proxy", black_box(&sealed))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
