//! One decision, three front ends: the same inputs through the proxy
//! listener, the ext_authz HTTP check (sent as Envoy sends it) and the
//! ext_authz gRPC check (a real tonic client) give the same outcome, and what
//! the upstream would see after Envoy applies an allow never carries a forged
//! identity. Runs the real binary against the demo IdP served in-process.

use crate::support;

use std::collections::BTreeMap;

use crate::support::{Authgate, GateConfig, TestServer, IDENTITY};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use tonic::transport::Channel;

const SPOOFED_EMAIL: &str = "evil@evil.test";
// `IDENTITY` (from support) is what a user lists in `headersToUpstreamOnAllow`;
// the list names `cookie` too: authgate returns it without its own cookies.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    Proxy,
    Http,
    Grpc,
}

const FRONTS: [Front; 3] = [Front::Proxy, Front::Http, Front::Grpc];

/// What a client sends (through Envoy, or to the proxy directly).
#[derive(Debug, Clone, Default)]
struct Input {
    path: String,
    cookie: Option<String>,
    authorization: Option<String>,
}

fn input(path: &str) -> Input {
    Input {
        path: path.into(),
        ..Default::default()
    }
}

/// A front end's answer once applied: the client's status, the headers the
/// upstream would get on an allow, and what the client is told otherwise.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    upstream: BTreeMap<String, Vec<String>>,
    location: Option<String>,
    set_cookies: Vec<String>,
}

impl Seen {
    fn upstream_email(&self) -> Option<Vec<String>> {
        self.upstream.get("x-auth-request-email").cloned()
    }

    /// Every `cookie` line the upstream would get, joined.
    fn upstream_cookies(&self) -> String {
        self.upstream
            .get("cookie")
            .map(|v| v.join("; "))
            .unwrap_or_default()
    }

    fn cookie_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .set_cookies
            .iter()
            .map(|c| {
                let name = c.split('=').next().unwrap_or_default();
                if name.starts_with("_oauth2_proxy_csrf") {
                    "csrf".to_owned()
                } else {
                    name.to_owned()
                }
            })
            .collect();
        names.sort();
        names
    }

    fn session_cookie(&self) -> String {
        self.set_cookies
            .iter()
            .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
            .map(|c| support::cookie_pair(c))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

struct Env {
    _authgate: Authgate,
    idp: TestServer,
    _echo: TestServer,
    issuer: String,
    /// The app's authority: the proxy's own, and what Envoy reports as Host.
    app: String,
    http_check: std::net::SocketAddr,
    grpc: AuthorizationClient<Channel>,
    client: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        let idp = TestServer::idp().await;
        let echo = TestServer::echo("app").await;
        let mut cfg = GateConfig::new(idp.port(), &[("/", echo.port())]);
        let (http_port, grpc_port) = cfg.with_ext_authz();
        cfg.provider = vec![
            "  claims:".into(),
            "    preferred_username: nickname".into(),
        ];
        cfg.authorization = vec![
            "  allowed_groups: [admins]".into(),
            "  skip_auth_routes: [\"^/public/\"]".into(),
            "  api_routes: [\"^/api/\"]".into(),
        ];
        let authgate = Authgate::run(&cfg).await;
        let grpc = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc_port}"))
            .await
            .unwrap();
        Env {
            _authgate: authgate,
            issuer: format!("http://127.0.0.1:{}", idp.port()),
            idp,
            _echo: echo,
            app: format!("127.0.0.1:{}", cfg.port),
            http_check: ([127, 0, 0, 1], http_port).into(),
            grpc,
            client: support::client(),
        }
    }

    /// The headers the client sends, a forged identity included.
    fn client_headers(&self, i: &Input) -> Vec<(String, String)> {
        let mut h = vec![
            ("host".to_owned(), self.app.clone()),
            ("accept".to_owned(), "text/html,*/*;q=0.8".to_owned()),
            ("x-auth-request-email".to_owned(), SPOOFED_EMAIL.to_owned()),
        ];
        if let Some(c) = &i.cookie {
            h.push(("cookie".into(), c.clone()));
        }
        if let Some(a) = &i.authorization {
            h.push(("authorization".into(), a.clone()));
        }
        h
    }

    async fn ask(&mut self, front: Front, i: &Input) -> Seen {
        match front {
            Front::Proxy => self.proxy(i).await,
            Front::Http => self.http(i).await,
            Front::Grpc => self.grpc(i).await,
        }
    }

    async fn proxy(&self, i: &Input) -> Seen {
        let mut req = self.client.get(format!("http://{}{}", self.app, i.path));
        for (k, v) in self.client_headers(i) {
            if k != "host" {
                req = req.header(k, v);
            }
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let (location, set_cookies) = client_headers_of(resp.headers());
        let from_upstream = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/json");
        // The proxy answers `/ping` itself: only the echo's JSON is upstream.
        let upstream = if status == 200 && from_upstream {
            let echo = support::echo_json(&resp.text().await.unwrap());
            let pairs: Vec<(String, String)> =
                serde_json::from_value(echo["headers"].clone()).unwrap();
            as_map(&pairs)
        } else {
            BTreeMap::new()
        };
        Seen {
            status,
            upstream,
            location,
            set_cookies,
        }
    }

    /// As Envoy's `envoyExtAuthzHttp` does: only Host, cookie, authorization
    /// and X-Forwarded-Proto reach the check; on exactly 200 the identity
    /// headers and `cookie` overwrite the client's, then
    /// `x-envoy-auth-headers-to-remove` is applied.
    async fn http(&self, i: &Input) -> Seen {
        let mut headers = vec![("host", self.app.as_str()), ("x-forwarded-proto", "http")];
        if let Some(c) = &i.cookie {
            headers.push(("cookie", c));
        }
        if let Some(a) = &i.authorization {
            headers.push(("authorization", a));
        }
        let (status, h) = support::raw_get(self.http_check, &i.path, &headers).await;
        let h = &h;
        let (location, set_cookies) = client_headers_of(h);
        let mut upstream = BTreeMap::new();
        if status == 200 {
            upstream = as_map(&self.client_headers(i));
            for name in IDENTITY.iter().chain(&["cookie"]) {
                let values: Vec<String> = h
                    .get_all(*name)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect();
                assert!(values.len() <= 1, "{name} more than once: {values:?}");
                if !values.is_empty() {
                    upstream.insert(name.to_string(), values);
                }
            }
            for v in h.get_all("x-envoy-auth-headers-to-remove") {
                for name in v.to_str().unwrap().split(',') {
                    let name = name.trim().to_ascii_lowercase();
                    assert!(h.get(&name).is_none(), "{name} is both set and removed");
                    upstream.remove(&name);
                }
            }
        }
        Seen {
            status,
            upstream,
            location,
            set_cookies,
        }
    }

    /// As Envoy's `envoyExtAuthzGrpc` does: every header in the request, then
    /// `ok_response` sets (per `append_action`) followed by removals, or the
    /// `denied_response` goes to the client.
    async fn grpc(&mut self, i: &Input) -> Seen {
        let headers = self.client_headers(i);
        let mut map = std::collections::HashMap::new();
        for (k, v) in &headers {
            map.insert(k.clone(), v.clone());
        }
        let req = support::check_request("GET", self.app.clone(), i.path.clone(), map);
        let resp: CheckResponse = self.grpc.check(req).await.unwrap().into_inner();
        let code = resp.status.as_ref().map_or(0, |s| s.code);
        match resp.http_response {
            Some(HttpResponse::OkResponse(ok)) => {
                assert_eq!(code, 0);
                let mut upstream = as_map(&headers);
                let mut set_cookies = Vec::new();
                for o in &ok.headers {
                    let h = o.header.as_ref().unwrap();
                    assert_eq!(
                        o.append_action, 2,
                        "{} must be OVERWRITE_IF_EXISTS_OR_ADD",
                        h.key
                    );
                    upstream.insert(h.key.to_ascii_lowercase(), vec![h.value.clone()]);
                }
                for name in &ok.headers_to_remove {
                    assert!(
                        !ok.headers
                            .iter()
                            .any(|o| &o.header.as_ref().unwrap().key == name),
                        "{name} is both set and removed"
                    );
                    upstream.remove(&name.to_ascii_lowercase());
                }
                for o in &ok.response_headers_to_add {
                    let h = o.header.as_ref().unwrap();
                    if h.key.eq_ignore_ascii_case("set-cookie") {
                        set_cookies.push(h.value.clone());
                    }
                }
                Seen {
                    status: 200,
                    upstream,
                    location: None,
                    set_cookies,
                }
            }
            Some(HttpResponse::DeniedResponse(d)) => {
                let status = d.status.as_ref().unwrap().code as u16;
                let expected = match status {
                    302 | 401 => 16,
                    403 => 7,
                    _ => code,
                };
                assert_eq!(code, expected, "gRPC code for a {status}");
                assert_ne!(code, 0);
                let value = |name: &str| -> Vec<String> {
                    d.headers
                        .iter()
                        .filter_map(|o| o.header.as_ref())
                        .filter(|h| h.key.eq_ignore_ascii_case(name))
                        .map(|h| h.value.clone())
                        .collect()
                };
                Seen {
                    status,
                    upstream: BTreeMap::new(),
                    location: value("location").into_iter().next(),
                    set_cookies: value("set-cookie"),
                }
            }
            other => panic!("no http_response: {other:?}"),
        }
    }

    /// The same input through all three front ends.
    async fn ask_all(&mut self, i: &Input) -> Vec<(Front, Seen)> {
        let mut out = Vec::new();
        for f in FRONTS {
            out.push((f, self.ask(f, i).await));
        }
        out
    }

    /// `user` signs in at the IdP for a login redirect; returns the callback URL.
    async fn login_at_idp(&self, location: &str, user: &str) -> url::Url {
        let authorize = url::Url::parse(location).unwrap();
        support::login_at_idp(&self.client, &authorize, user).await
    }

    /// A whole login through one front end; returns the callback's answer.
    async fn login(&mut self, front: Front, user: &str, target: &str) -> (Seen, Seen) {
        let first = self.ask(front, &input(target)).await;
        assert_eq!(first.status, 302, "{front:?}: {first:?}");
        let location = first.location.clone().unwrap();
        assert!(
            location.starts_with(&format!("{}/authorize?", self.issuer)),
            "{location}"
        );
        let csrf = support::cookie_pair(&first.set_cookies[0]);
        let back = self.login_at_idp(&location, user).await;
        assert_eq!(back.authority(), self.app);
        let callback = Input {
            path: format!("{}?{}", back.path(), back.query().unwrap()),
            cookie: Some(csrf),
            ..Default::default()
        };
        let cb = self.ask(front, &callback).await;
        (first, cb)
    }
}

fn client_headers_of(h: &http::HeaderMap) -> (Option<String>, Vec<String>) {
    let location = h.get("location").map(|v| v.to_str().unwrap().to_owned());
    let cookies = h
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (location, cookies)
}

fn as_map(headers: &[(String, String)]) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        m.entry(k.to_ascii_lowercase()).or_default().push(v.clone());
    }
    m
}

fn tamper(cookie: &str) -> String {
    let (name, value) = cookie.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    format!("{name}={}", String::from_utf8(bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_decision_gives_the_same_outcome_on_all_three_front_ends() {
    let mut env = Env::start().await;

    // alice's session comes from a login done purely through ext_authz HTTP:
    // the callback check answers 302 + the session cookie as a deny, and the
    // next check with that cookie is exactly 200.
    let (_, cb) = env.login(Front::Http, "alice", "/app/home").await;
    assert_eq!(cb.status, 302, "{cb:?}");
    assert_eq!(
        cb.location.as_deref(),
        Some(&*format!("http://{}/app/home", env.app))
    );
    let alice = cb.session_cookie();
    assert!(alice.starts_with("_oauth2_proxy="), "{cb:?}");
    let next = env
        .ask(
            Front::Http,
            &Input {
                path: "/app/home".into(),
                cookie: Some(alice.clone()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(next.status, 200);

    let redirect_uri = format!("http://{}/oauth2/callback", env.app);
    let alice_jwt = support::id_token(&env.idp, &redirect_uri, "alice").await;
    let bob_jwt = support::id_token(&env.idp, &redirect_uri, "bob").await;
    let alice_email = Some(vec!["alice@example.com".to_owned()]);

    struct Row {
        name: &'static str,
        input: Input,
        status: u16,
        email: Option<Vec<String>>,
        cookies: Vec<&'static str>,
    }
    let rows = vec![
        Row {
            name: "anonymous browser: login redirect with a CSRF cookie",
            input: input("/app/page?x=1"),
            status: 302,
            email: None,
            cookies: vec!["csrf"],
        },
        Row {
            name: "anonymous API route: 401",
            input: input("/api/data"),
            status: 401,
            email: None,
            cookies: vec![],
        },
        Row {
            name: "alice's session: allowed with her identity",
            input: Input {
                path: "/app/page".into(),
                cookie: Some(alice.clone()),
                ..Default::default()
            },
            status: 200,
            email: alice_email.clone(),
            cookies: vec![],
        },
        Row {
            name: "alice's bearer JWT: allowed with her identity",
            input: Input {
                path: "/api/data".into(),
                authorization: Some(format!("Bearer {alice_jwt}")),
                ..Default::default()
            },
            status: 200,
            email: alice_email.clone(),
            cookies: vec![],
        },
        Row {
            name: "bob (not in allowed_groups): 403",
            input: Input {
                path: "/app/page".into(),
                authorization: Some(format!("Bearer {bob_jwt}")),
                ..Default::default()
            },
            status: 403,
            email: None,
            cookies: vec![],
        },
        Row {
            name: "skip route: allowed, no identity, the forged one removed",
            input: input("/public/info"),
            status: 200,
            email: None,
            cookies: vec![],
        },
        Row {
            name: "tampered session cookie: anonymous browser",
            input: Input {
                path: "/app/page".into(),
                cookie: Some(tamper(&alice)),
                ..Default::default()
            },
            status: 302,
            email: None,
            cookies: vec!["csrf"],
        },
        Row {
            name: "tampered session cookie on an API route: 401",
            input: Input {
                path: "/api/data".into(),
                cookie: Some(tamper(&alice)),
                ..Default::default()
            },
            status: 401,
            email: None,
            cookies: vec![],
        },
    ];

    for row in rows {
        for (front, seen) in env.ask_all(&row.input).await {
            let what = format!("{} via {front:?}: {seen:?}", row.name);
            assert_eq!(seen.status, row.status, "{what}");
            assert_eq!(seen.upstream_email(), row.email, "{what}");
            assert_eq!(seen.cookie_names(), row.cookies, "{what}");
            let forged = seen
                .upstream
                .values()
                .flatten()
                .any(|v| v.contains(SPOOFED_EMAIL));
            assert!(!forged, "the forged identity survived: {what}");
            if seen.status == 200 {
                for name in IDENTITY {
                    let n = seen.upstream.get(*name).map_or(0, Vec::len);
                    assert!(n <= 1, "{name} reached the upstream {n} times: {what}");
                }
                assert!(
                    !seen.upstream_cookies().contains("_oauth2_proxy"),
                    "authgate's cookies reached the upstream: {what}"
                );
            }
            if seen.status == 302 {
                let loc = seen.location.as_deref().unwrap_or_default();
                assert!(
                    loc.starts_with(&format!("{}/authorize?", env.issuer)),
                    "{what}"
                );
            }
        }
    }

    // The app's own /ping is decided like any other path behind Envoy; only
    // the proxy listener answers it itself.
    for front in [Front::Http, Front::Grpc] {
        let seen = env.ask(front, &input("/ping")).await;
        assert_eq!(seen.status, 302, "{front:?}: {seen:?}");
    }
    assert_eq!(env.ask(Front::Proxy, &input("/ping")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_callback_is_answered_alike_on_all_three_front_ends() {
    let mut env = Env::start().await;
    let mut sessions = Vec::new();
    for front in FRONTS {
        // A good state: 302 back to the target with the session cookie.
        let (_, cb) = env.login(front, "alice", "/app/after?y=2").await;
        assert_eq!(cb.status, 302, "{front:?}: {cb:?}");
        assert_eq!(
            cb.location.as_deref(),
            Some(&*format!("http://{}/app/after?y=2", env.app)),
            "{front:?}"
        );
        assert!(
            cb.cookie_names().contains(&"_oauth2_proxy".to_owned()),
            "{front:?}: {cb:?}"
        );
        assert!(
            cb.cookie_names().contains(&"csrf".to_owned()),
            "the CSRF cookie is cleared"
        );
        sessions.push(cb.session_cookie());

        // bob completes the login but is refused: 403, no session.
        let (_, cb) = env.login(front, "bob", "/app/after").await;
        assert_eq!(cb.status, 403, "{front:?}: {cb:?}");
        assert!(!cb.cookie_names().contains(&"_oauth2_proxy".to_owned()));

        // A state that matches no flow: 4xx, no session.
        let first = env.ask(front, &input("/app/x")).await;
        let back = env
            .login_at_idp(first.location.as_deref().unwrap(), "alice")
            .await;
        let bad = Input {
            path: format!(
                "{}?{}",
                back.path(),
                back.query().unwrap().replace("state=", "state=x")
            ),
            cookie: Some(support::cookie_pair(&first.set_cookies[0])),
            ..Default::default()
        };
        let seen = env.ask(front, &bad).await;
        assert!((400..500).contains(&seen.status), "{front:?}: {seen:?}");
        assert!(!seen.cookie_names().contains(&"_oauth2_proxy".to_owned()));
    }
    // A session made on any listener is valid on every listener.
    for cookie in sessions {
        let i = Input {
            path: "/app/after".into(),
            cookie: Some(cookie),
            ..Default::default()
        };
        for (front, seen) in env.ask_all(&i).await {
            assert_eq!(seen.status, 200, "{front:?}: {seen:?}");
            assert_eq!(
                seen.upstream_email(),
                Some(vec!["alice@example.com".to_owned()]),
                "{front:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_apps_cookies_without_authgates_on_all_three_front_ends() {
    let mut env = Env::start().await;
    let (_, cb) = env.login(Front::Proxy, "alice", "/app/home").await;
    let alice = cb.session_cookie();
    assert!(alice.starts_with("_oauth2_proxy="), "{cb:?}");
    let with_cookie = |path: &str, cookie: String| Input {
        path: path.into(),
        cookie: Some(cookie),
        ..Default::default()
    };
    let cases = [
        (
            "alice's session beside app cookies",
            with_cookie("/app/page", format!("theme=dark; {alice}; lang=en")),
            "theme=dark; lang=en",
        ),
        (
            "only alice's session: no cookie header upstream",
            with_cookie("/app/page", alice.clone()),
            "",
        ),
        (
            "a skip route with chunk and CSRF cookies",
            with_cookie(
                "/public/x",
                "_oauth2_proxy_csrf_abc=v; theme=dark; _oauth2_proxy_1=zz".into(),
            ),
            "theme=dark",
        ),
        (
            "a skip route with app cookies only: left as sent",
            with_cookie("/public/x", "theme=dark; _oauth2_proxy_other=1".into()),
            "theme=dark; _oauth2_proxy_other=1",
        ),
    ];
    for (name, input, expected) in cases {
        for (front, seen) in env.ask_all(&input).await {
            assert_eq!(seen.status, 200, "{name} via {front:?}: {seen:?}");
            assert_eq!(
                seen.upstream_cookies(),
                expected,
                "{name} via {front:?}: {seen:?}"
            );
        }
    }
}
