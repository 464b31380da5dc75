//! The unit tests' kit: the demo IdP served on a loopback port, a `Gate`
//! discovered against it, and helpers to mint sessions and walk a login.
//! Shared by the decision's and both ext_authz front ends' unit tests.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, COOKIE};
use http::{HeaderMap, HeaderValue, Method, Response};
use tokio::net::TcpListener;

use crate::authz::{admit, Admitted, Decision, Identity, Listener, Received, Trust};
use crate::demo::idp::{DemoClient, DemoIdp};
use crate::gate::Gate;
use crate::metrics::Metrics;
use crate::session::cookies::CookieJar;
use crate::session::Session;

/// The app's authority as Envoy reports it.
pub const HOST: &str = "app.example.test";
/// Identity headers a session sets (the config maps
/// `preferred_username` to a claim nobody has).
pub const IDENTITY_SET: &[&str] = &[
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
];
pub const IDENTITY_UNSET: &[&str] = &[
    "x-auth-request-preferred-username",
    "x-forwarded-preferred-username",
];

/// One RSA key per test binary: generating one takes seconds in debug.
fn key() -> rsa::RsaPrivateKey {
    static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
        .clone()
}

/// Serves the IdP on `listener` with the demo's one HTTP server, detached
/// (it lives as long as the test's runtime).
fn serve(listener: TcpListener, idp: DemoIdp) {
    crate::demo::http_server::spawn(listener, idp.handler()).unwrap();
}

pub struct Kit {
    pub gate: Arc<Gate>,
    pub idp: DemoIdp,
    pub issuer: String,
}

/// A discovered gate; `server_extra` is indented YAML for `server:`.
pub async fn kit(server_extra: &str) -> Kit {
    start(server_extra, "", SKIP_ROUTES, true).await
}

/// Same, with extra keys for `cookie:`.
pub async fn kit_with_cookie(cookie_extra: &str) -> Kit {
    start("", cookie_extra, SKIP_ROUTES, true).await
}

/// Same, with other `skip_auth_routes` (a YAML flow list).
pub async fn kit_with_skip_routes(skip_routes: &str) -> Kit {
    start("", "", skip_routes, true).await
}

/// A gate whose IdP never answers.
pub async fn kit_without_idp() -> Kit {
    start("", "", SKIP_ROUTES, false).await
}

const SKIP_ROUTES: &str = r#"["^/public/"]"#;

async fn start(server_extra: &str, cookie_extra: &str, skip_routes: &str, serve_idp: bool) -> Kit {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}");
    let idp = DemoIdp::new_with_key(
        url::Url::parse(&issuer).unwrap(),
        vec![DemoClient {
            client_id: "authgate".into(),
            client_secret: "s3cret".into(),
            redirect_uris: vec![
                format!("http://{HOST}/oauth2/callback"),
                format!("https://{HOST}/oauth2/callback"),
            ],
        }],
        key(),
    )
    .unwrap();
    if serve_idp {
        serve(listener, idp.clone());
    } else {
        drop(listener);
    }
    let yaml = format!(
        r#"server:
  listen: 127.0.0.1:4180
  ext_authz_http: 127.0.0.1:4181
  ext_authz_grpc: 127.0.0.1:4182
{server_extra}
provider:
  issuer_url: {issuer}
  client_id: authgate
  client_secret: s3cret
  claims:
    preferred_username: nickname
cookie:
  secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY
  secure: false
{cookie_extra}
authorization:
  allowed_groups: [admins]
  skip_auth_routes: {skip_routes}
  api_routes: ["^/api/"]
upstreams:
  - path: /
    url: http://127.0.0.1:9
"#
    );
    let cfg = crate::config::load_str_with_env(&yaml, &|_| None)
        .unwrap_or_else(|e| panic!("{:?}", e.lines().collect::<Vec<_>>()));
    let gate = Gate::new(Arc::new(cfg), Metrics::new().unwrap()).unwrap();
    let provider = gate.provider.clone();
    tokio::spawn(async move { provider.maintain().await });
    if serve_idp {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !gate.provider.is_ready() {
            assert!(Instant::now() < deadline, "the IdP was never discovered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Kit { gate, idp, issuer }
}

/// `name=value` of a `Set-Cookie` line.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

pub fn cookie_header(set_cookies: &[HeaderValue]) -> String {
    set_cookies
        .iter()
        .map(|c| cookie_pair(c.to_str().unwrap()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn headers_with_cookie(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !cookie.is_empty() {
        h.insert(COOKIE, HeaderValue::from_str(cookie).unwrap());
    }
    h
}

/// A `GET` of `uri` on [`HOST`] over plain HTTP, through the request edge
/// as `listener` would admit it.
pub fn admitted<'a>(listener: Listener, uri: &'a str, headers: &'a HeaderMap) -> Admitted<'a> {
    let rx = Received {
        listener,
        method: "GET",
        target: uri.as_bytes(),
        authority: HOST,
        scheme: Some("http"),
        headers,
        client_ip: None,
        path_prefix: "",
    };
    admit(rx, Trust::Caller).unwrap()
}

impl Kit {
    /// The `cookie` header value carrying `session`.
    async fn cookie_for(&self, session: &Session) -> String {
        let set = self
            .gate
            .store
            .save(session, None, HOST, &CookieJar::default())
            .await
            .unwrap();
        cookie_header(&set)
    }

    /// A session cookie for a demo user, minted without the IdP.
    pub async fn session_cookie(&self, user: &str) -> String {
        let (email, groups) = match user {
            "alice" => ("alice@example.com", vec!["admins", "devs"]),
            _ => ("bob@example.com", vec!["users"]),
        };
        let now = crate::clock::unix_now();
        let session = Session {
            identity: Identity {
                user: email.into(),
                email: email.into(),
                preferred_username: String::new(),
                groups: groups.into_iter().map(String::from).collect(),
            }
            .into(),
            sub: user.into(),
            sid: None,
            id_token: None,
            access_token: None,
            refresh_token: None,
            refreshed_at: now,
            expires_at: now + 3600,
            claims: None,
        };
        self.cookie_for(&session).await
    }

    /// Signs `user` in at the IdP for a login redirect `location`;
    /// returns the callback's path and query.
    pub fn login_at_idp(&self, location: &str, user: &str) -> String {
        assert!(location.starts_with(&self.issuer), "{location}");
        let url = url::Url::parse(location).unwrap();
        let form = format!("{}&username={user}&password={user}", url.query().unwrap());
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let resp: Response<Vec<u8>> =
            self.idp
                .handle(&Method::POST, "/authorize", &h, form.as_bytes());
        assert!(resp.status().is_redirection(), "{}", resp.status());
        let back = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        format!("{}?{}", back.path(), back.query().unwrap_or_default())
    }

    /// A real session (with tokens) for `user`, through a whole login.
    pub async fn login_cookie(&self, user: &str) -> String {
        let none = HeaderMap::new();
        let Decision::Reply(first) = self
            .gate
            .decide(&admitted(Listener::ExtAuthzGrpc, "/app", &none).view())
            .await
        else {
            panic!("anonymous request was not answered");
        };
        let header = |r: &crate::authz::Reply, n: &str| -> Vec<String> {
            r.headers
                .iter()
                .filter(|(k, _)| k == n)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
                .collect()
        };
        let back = self.login_at_idp(&header(&first, "location")[0], user);
        let csrf = cookie_pair(&header(&first, "set-cookie")[0]);
        let with_csrf = headers_with_cookie(&csrf);
        let Decision::Reply(cb) = self
            .gate
            .decide(&admitted(Listener::ExtAuthzGrpc, &back, &with_csrf).view())
            .await
        else {
            panic!("callback was not answered");
        };
        assert_eq!(cb.status, http::StatusCode::FOUND, "{cb:?}");
        header(&cb, "set-cookie")
            .iter()
            .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
            .map(|c| cookie_pair(c))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The same session, re-sealed as if its tokens were obtained long ago.
    pub async fn age_session(&self, cookie: &str) -> String {
        let h = headers_with_cookie(cookie);
        let jar = CookieJar::from_headers(&h);
        let (mut session, _) = self.gate.store.load(&jar).await.unwrap().unwrap();
        assert!(session.refresh_token.is_some());
        session.refreshed_at = 0;
        self.cookie_for(&session).await
    }
}
