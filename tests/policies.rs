//! `policies` from the outside: the real binary, the demo IdP and an echo
//! upstream; each row (who, method, host, path) is asked through the proxy,
//! ext_authz HTTP (as Envoy sends it), ext_authz gRPC (a real tonic client)
//! and `/oauth2/auth` (a trusted forward-auth caller's headers), and all
//! four must give the same answer: one decision. Also: sessions keep the
//! claims an expression reads, the 403 page and metric name the policy,
//! `check` rejects bad expressions, and `policy explain` runs the README's
//! example.

use crate::support;

use std::collections::HashMap;
use std::process::Command;

use crate::support::{Authgate, GateConfig, TestServer};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use tonic::transport::Channel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Proxy,
    Http,
    Grpc,
    Auth,
}

const FRONTS: [Front; 4] = [Front::Proxy, Front::Http, Front::Grpc, Front::Auth];

/// The policies under test (README's shape), top-level YAML.
const POLICIES: &str = r#"policies:
  - name: open-docs
    paths: ["^/docs/"]
    skip_auth: true
  - name: prometheus-admin
    hosts: [prometheus.example.com]
    paths: ["^/api/v1/admin/"]
    methods: [POST, PUT, DELETE]
    allowed_groups: [admins]
  - name: team-sites
    hosts: [".team.example.com"]
    allowed_emails: [bob@example.com]
  - name: corp-only
    paths: ["^/corp/"]
    email_domains: [example.com]
  - name: partners-only
    paths: ["^/partners/"]
    email_domains: [partner.io]
  - name: devs-read
    paths: ["^/cel/"]
    expression: 'has(claims.groups) && "devs" in claims.groups && request.method == "GET"'
  - name: bob-by-name
    paths: ["^/who/"]
    expression: 'identity.preferred_username == "bob" && request.host == "app.example.com"'
  - name: broken
    paths: ["^/broken/"]
    expression: 'claims.no_such_claim == "x"'
"#;

struct Env {
    gate: Authgate,
    idp: TestServer,
    _echo: TestServer,
    http_check: std::net::SocketAddr,
    grpc: AuthorizationClient<Channel>,
    client: reqwest::Client,
}

fn config(idp: &TestServer, echo: &TestServer, extra: &str) -> (GateConfig, u16, u16) {
    let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
    cfg.server = vec!["  trusted_proxies: [127.0.0.1/32]".into()];
    let (http_port, grpc_port) = cfg.with_ext_authz();
    // Top-level sections ride after `authorization:`'s lines.
    cfg.authorization = vec![
        "  allowed_groups: []".into(),
        "  skip_auth_routes: [\"^/public/\"]".into(),
        "  api_routes: [\"^/api/\"]".into(),
    ];
    cfg.authorization.extend(extra.lines().map(str::to_owned));
    (cfg, http_port, grpc_port)
}

impl Env {
    async fn start(extra: &str) -> Env {
        let idp = TestServer::idp().await;
        let echo = TestServer::echo("app").await;
        let (cfg, http_port, grpc_port) = config(&idp, &echo, extra);
        let gate = Authgate::run(&cfg).await;
        let grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
            .await
            .unwrap();
        Env {
            gate,
            idp,
            _echo: echo,
            http_check: ([127, 0, 0, 1], http_port).into(),
            grpc,
            client: support::client(),
        }
    }

    async fn jwt(&self, user: &str) -> String {
        let redirect = format!("http://127.0.0.1:{}/oauth2/callback", self.gate.port);
        support::id_token(&self.idp, &redirect, user).await
    }

    /// The status a front end answers (`/oauth2/auth`'s 202 counted as 200,
    /// gRPC's denied_response as its HTTP status).
    async fn ask(&mut self, front: Front, r: &Req<'_>) -> u16 {
        let mut headers: Vec<(String, String)> = vec![("accept".into(), "application/json".into())];
        if let Some(c) = &r.cookie {
            headers.push(("cookie".into(), c.clone()));
        }
        if let Some(t) = &r.bearer {
            headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        match front {
            Front::Proxy => {
                let mut req = self.client.request(
                    r.method.parse().unwrap(),
                    format!("http://127.0.0.1:{}{}", self.gate.port, r.path),
                );
                req = req.header("host", r.host);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                req.send().await.unwrap().status().as_u16()
            }
            Front::Http => {
                let mut raw = format!(
                    "{} {} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n",
                    r.method, r.path, r.host
                );
                for (k, v) in &headers {
                    raw.push_str(&format!("{k}: {v}\r\n"));
                }
                raw.push_str("connection: close\r\n\r\n");
                support::raw_exchange(self.http_check, raw).await.0
            }
            Front::Grpc => {
                let map: HashMap<String, String> = headers.into_iter().collect();
                let req = support::check_request(r.method, r.host, r.path, map);
                let resp = self.grpc.check(req).await.unwrap().into_inner();
                match resp.http_response {
                    Some(HttpResponse::OkResponse(_)) => 200,
                    Some(HttpResponse::DeniedResponse(d)) => d.status.unwrap().code as u16,
                    other => panic!("no http_response: {other:?}"),
                }
            }
            Front::Auth => {
                let mut req = self
                    .client
                    .get(format!("http://127.0.0.1:{}/oauth2/auth", self.gate.port))
                    .header("x-forwarded-method", r.method)
                    .header("x-forwarded-host", r.host)
                    .header("x-forwarded-uri", r.path);
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                match req.send().await.unwrap().status().as_u16() {
                    202 => 200,
                    s => s,
                }
            }
        }
    }
}

/// (what, bearer token, method, host, path, expected status).
type Row<'a> = (&'a str, Option<String>, &'a str, &'a str, &'a str, u16);

struct Req<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    bearer: Option<String>,
    cookie: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_give_one_answer_on_all_four_front_ends() {
    let mut env = Env::start(POLICIES).await;
    let alice = Some(env.jwt("alice").await);
    let bob = Some(env.jwt("bob").await);
    let none: Option<String> = None;
    let prom = "prometheus.example.com";
    let app = "app.example.com";
    #[rustfmt::skip]
    let rows: Vec<Row<'_>> = vec![
        ("admin API: alice (admins) may POST", alice.clone(), "POST", prom, "/api/v1/admin/tsdb/snapshot", 200),
        ("admin API: bob may not POST", bob.clone(), "POST", prom, "/api/v1/admin/tsdb/snapshot", 403),
        ("admin API: bob may not DELETE, host port ignored", bob.clone(), "DELETE", "prometheus.example.com:9090", "/api/v1/admin/x", 403),
        ("admin API: GET is not in methods: bob may", bob.clone(), "GET", prom, "/api/v1/admin/tsdb", 200),
        ("admin API on another host: bob may", bob.clone(), "POST", app, "/api/v1/admin/tsdb", 200),
        ("queries: bob may", bob.clone(), "POST", prom, "/api/v1/query", 200),
        ("ambiguous `;` (Tomcat reads /api/v1/admin/x): restrictive policy applies", bob.clone(), "POST", prom, "/api/v1/admin;x/tsdb", 403),
        ("ambiguous `..;`: restrictive policy applies", bob.clone(), "POST", prom, "/public/..;/api/v1/admin/x", 403),
        ("subdomain policy: bob (allowed_emails)", bob.clone(), "GET", "wiki.team.example.com", "/page", 200),
        ("subdomain policy: alice not listed", alice.clone(), "GET", "wiki.team.example.com", "/page", 403),
        ("subdomain policy does not cover the apex", alice.clone(), "GET", "team.example.com", "/page", 200),
        ("email_domains example.com: alice", alice.clone(), "GET", app, "/corp/x", 200),
        ("email_domains partner.io: alice is not", alice.clone(), "GET", app, "/partners/x", 403),
        ("CEL on claims: alice is in devs", alice.clone(), "GET", app, "/cel/x", 200),
        ("CEL on claims: bob is not", bob.clone(), "GET", app, "/cel/x", 403),
        ("CEL on request: alice may not POST", alice.clone(), "POST", app, "/cel/x", 403),
        ("CEL on identity and host: bob", bob.clone(), "GET", app, "/who/x", 200),
        ("CEL on identity: alice is not bob", alice.clone(), "GET", app, "/who/x", 403),
        ("CEL on identity and host: bob on another host", bob.clone(), "GET", prom, "/who/x", 403),
        ("CEL evaluation error denies", alice.clone(), "GET", app, "/broken/x", 403),
        ("skip_auth policy: anonymous allowed", none.clone(), "GET", app, "/docs/intro", 200),
        ("skip_auth policy never applies to an ambiguous target", none.clone(), "GET", app, "/docs/%2e%2e/private", 401),
        ("skip_auth policy never applies to `..;`", none.clone(), "GET", app, "/docs/..;/private", 401),
        ("skip_auth_routes still first", none.clone(), "GET", app, "/public/x", 200),
        ("no policy: authorization alone, anonymous", none.clone(), "GET", app, "/other", 401),
        ("no policy: authorization alone, bob", bob.clone(), "GET", app, "/other", 200),
    ];
    let mut failures = Vec::new();
    for (name, who, method, host, path, want) in &rows {
        let req = Req {
            method,
            host,
            path,
            bearer: who.clone(),
            cookie: None,
        };
        for front in FRONTS {
            let got = env.ask(front, &req).await;
            if got != *want {
                failures.push(format!("{name} via {front:?}: got {got}, want {want}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The policy's 403 names the policy and who is signed in.
    let resp = env
        .client
        .post(format!("http://127.0.0.1:{}/api/v1/admin/x", env.gate.port))
        .header("host", prom)
        .header("authorization", format!("Bearer {}", bob.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(r#"<strong id="policy">prometheus-admin</strong>"#),
        "{page}"
    );
    assert!(page.contains("bob@example.com"), "{page}");

    let metrics = env.gate.metrics().await;
    for (series, at_least) in [
        (
            r#"authgate_policy_decisions_total{policy="prometheus-admin",result="forbidden"}"#,
            8.0,
        ),
        (
            r#"authgate_policy_decisions_total{policy="prometheus-admin",result="allowed"}"#,
            4.0,
        ),
        (
            r#"authgate_policy_decisions_total{policy="broken",result="forbidden"}"#,
            4.0,
        ),
    ] {
        let v = support::metric(&metrics, series).unwrap_or_else(|| panic!("{series} missing"));
        assert!(v >= at_least, "{series} = {v}");
    }
    // The evaluation error is logged once, without claim values.
    let log = env.gate.stderr();
    let warned = log.matches("policy expression failed to evaluate").count();
    assert_eq!(warned, 1, "{log}");
    assert!(
        !log.contains("demo-user-alice"),
        "claims leaked into the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_the_claims_a_policy_expression_reads() {
    let mut env = Env::start(POLICIES).await;
    for (user, want) in [("alice", 200), ("bob", 403)] {
        let client = support::client();
        let mut jar = support::Jar::default();
        let page = format!("http://127.0.0.1:{}/cel/page", env.gate.port);
        let done = support::login(&client, &mut jar, &page, user).await;
        assert_eq!(done.status(), 302, "{user}'s callback");
        let req = Req {
            method: "GET",
            host: &format!("127.0.0.1:{}", env.gate.port),
            path: "/cel/page",
            bearer: None,
            cookie: Some(jar.header()),
        };
        for front in FRONTS {
            assert_eq!(env.ask(front, &req).await, want, "{user} via {front:?}");
        }
    }
}

/// `authgate check --config` on `yaml`: (exit code, stdout).
fn check(yaml: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(support::bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

const BASE: &str = "provider:\n  issuer_url: http://127.0.0.1:9/\n  client_id: c\n  client_secret: s\n\
cookie:\n  secret: \"0123456789abcdef0123456789abcdef\"\nupstreams:\n  - path: /\n    url: http://127.0.0.1:9\n";

#[test]
fn check_rejects_bad_policies_naming_each_key() {
    let policies = [
        "policies:",
        "  - name: a",
        "    expression: 'claims.x =='",
        "  - name: b",
        "    expression: 'user.email == \"x\"'",
        "  - name: a",
        "    paths: [\"(\"]",
        "  - hosts: [\"\"]",
        "    methods: [\"GET /\"]",
        "  - name: open",
        "    skip_auth: true",
        "    allowed_groups: [admins]",
    ];
    let yaml = format!("{BASE}{}\n", policies.join("\n"));
    let (code, out) = check(&yaml);
    assert_eq!(code, 1, "{out}");
    for key in [
        "policies[0].expression: invalid CEL",
        "policies[1].expression: unknown variable \"user\"",
        "policies[2].name: duplicate policy name",
        "policies[2].paths[0]: invalid regex",
        "policies[3].name: must not be empty",
        "policies[3].hosts[0]:",
        "policies[3].methods[0]:",
        "policies[4].skip_auth:",
    ] {
        assert!(out.contains(key), "{key} missing in:\n{out}");
    }
    let good = format!("{BASE}{POLICIES}");
    let (code, out) = check(&good);
    assert_eq!(code, 0, "{out}");
}

/// The fenced block after `marker` in the README.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in README"));
    let rest = &readme[at..];
    let start = rest.find("```").unwrap();
    let body = &rest[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn policy_explain_runs_the_readme_examples() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("authgate.yaml");
    std::fs::write(
        &conf,
        format!("{BASE}{}", readme_block("<!-- policies-example -->")),
    )
    .unwrap();
    let claims = dir.path().join("claims.json");
    std::fs::write(&claims, readme_block("<!-- claims-example -->")).unwrap();
    let explain = |method: &str, url: &str| {
        let out = Command::new(support::bin())
            .args(["policy", "explain", "--config"])
            .arg(&conf)
            .arg("--claims")
            .arg(&claims)
            .args([method, url])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // The README's three commands and their documented exits.
    let (code, out) = explain(
        "POST",
        "https://prometheus.example.com/api/v1/admin/tsdb/snapshot",
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("policies[0] prometheus-admin: matched, applies"),
        "{out}"
    );
    assert!(out.contains("  expression: pass"), "{out}");
    assert!(
        out.contains("decision: allowed (policy prometheus-admin)"),
        "{out}"
    );
    let (code, out) = explain("POST", "https://grafana.example.com/admin/users");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("decision: forbidden (by policy grafana-admin)"),
        "{out}"
    );
    assert!(out.contains("  allowed_groups: FAIL"), "{out}");
    let (code, out) = explain("GET", "https://prometheus.example.com/-/healthy");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("skipped by policy health"), "{out}");
    // Bad input: exit 2.
    assert_eq!(explain("GET", "/relative").0, 2);
    assert_eq!(explain("G E T", "https://h/").0, 2);
    std::fs::write(&claims, "[1]").unwrap();
    assert_eq!(explain("GET", "https://h/").0, 2);
}

/// `authgate_policy_decisions_total{policy,result}` for every restrictive
/// policy exists at zero before the first request (dashboards and alerts
/// see it), and follows a `SIGHUP` reload that renames, adds or drops a
/// policy; a `skip_auth` policy decides nothing and has no series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_series_exist_at_zero_from_start_and_after_a_reload() {
    let env = Env::start(POLICIES).await;
    let series = |policy: &str, result: &str| {
        format!(r#"authgate_policy_decisions_total{{policy="{policy}",result="{result}"}}"#)
    };
    let text = env.gate.metrics().await;
    for policy in [
        "prometheus-admin",
        "team-sites",
        "corp-only",
        "partners-only",
        "devs-read",
        "bob-by-name",
        "broken",
    ] {
        for result in ["allowed", "forbidden"] {
            let s = series(policy, result);
            assert_eq!(support::metric(&text, &s), Some(0.0), "{s} in\n{text}");
        }
    }
    assert!(!text.contains(r#"policy="open-docs""#), "{text}");

    let yaml = std::fs::read_to_string(env.gate.config_path()).unwrap();
    let renamed = yaml
        .replace("name: corp-only", "name: corp-members")
        .replace("name: broken\n", "name: staff\n");
    assert_ne!(renamed, yaml);
    std::fs::write(env.gate.config_path(), &renamed).unwrap();
    env.gate.signal(libc::SIGHUP);
    let reloaded = r#"authgate_config_reloads_total{result="ok"}"#;
    let text = support::eventually(
        std::time::Duration::from_secs(20),
        "the reload counted",
        || async {
            let text = env.gate.metrics().await;
            (support::metric(&text, reloaded) == Some(1.0)).then_some(text)
        },
    )
    .await;
    for policy in ["corp-members", "staff", "prometheus-admin"] {
        for result in ["allowed", "forbidden"] {
            let s = series(policy, result);
            assert_eq!(support::metric(&text, &s), Some(0.0), "{s} in\n{text}");
        }
    }
    for gone in ["corp-only", "broken"] {
        assert!(!text.contains(&format!(r#"policy="{gone}""#)), "{text}");
    }
}
