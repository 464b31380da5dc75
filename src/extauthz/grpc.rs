//! The ext_authz gRPC check service (`envoy.service.auth.v3.Authorization/Check`).
//!
//! Every decision is `Ok(CheckResponse)`; `Err(Status)` is for internal
//! faults only (Envoy then applies its `failure_mode_allow` / `status_on_error`).
//! Allow is code 0 with identity headers set with `OVERWRITE_IF_EXISTS_OR_ADD`
//! (an unset action would append: duplicate identities); `headers_to_remove`
//! names only identity headers we did not set, since Envoy applies removals
//! after sets. Denies carry our whole reply in `denied_response`, each
//! `Set-Cookie` its own `APPEND_IF_EXISTS_OR_ADD` option (the deprecated
//! `append` flag is left unset: with it Envoy folds values into one line).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use futures::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tonic::{Request, Response, Status};

use crate::authz::{Decision, Grant, Listener, Outcome, Reply, RequestView};
use crate::gate::Gate;

/// google.rpc.Code values Envoy acts on (it allows on 0 and denies on any
/// other code with our `denied_response`).
pub const OK: i32 = 0;
pub const INVALID_ARGUMENT: i32 = 3;
pub const PERMISSION_DENIED: i32 = 7;
pub const UNAVAILABLE: i32 = 14;
pub const UNAUTHENTICATED: i32 = 16;

pub struct ExtAuthzGrpc {
    gate: Arc<Gate>,
}

impl ExtAuthzGrpc {
    pub fn new(gate: Arc<Gate>) -> Self {
        ExtAuthzGrpc { gate }
    }

    /// The decision for one CheckRequest, as a CheckResponse.
    pub async fn check_request(&self, req: &CheckRequest) -> (Outcome, CheckResponse) {
        let attrs = req.attributes.as_ref();
        let Some(http) = attrs
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            // Istio's TCP filter sends no HTTP attributes: nothing to decide on.
            return (
                Outcome::Forbidden,
                deny_plain(PERMISSION_DENIED, 403, "no HTTP request attributes"),
            );
        };
        let headers = header_map(http);
        // Envoy fills `host`, `path` and `method`; the pseudo-headers are the
        // same facts for callers that only send headers.
        let host = non_empty(&http.host)
            .or_else(|| pseudo(http, ":authority"))
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .map(Cow::Borrowed)
            })
            .unwrap_or_default();
        let path = non_empty(&http.path)
            .or_else(|| pseudo(http, ":path"))
            .unwrap_or(Cow::Borrowed("/"));
        // As on the other listeners: only a path we can decide on (Envoy
        // sends origin-form) is decided.
        if !path.starts_with('/') {
            let reply = crate::endpoints::pages::text(
                ::http::StatusCode::BAD_REQUEST,
                Outcome::Error,
                "Bad request target\n",
            );
            return (Outcome::Error, deny(reply));
        }
        let method = non_empty(&http.method)
            .or_else(|| pseudo(http, ":method"))
            .unwrap_or(Cow::Borrowed("GET"));
        // Envoy sets `scheme` from the request's X-Forwarded-Proto; both come
        // from the ext_authz caller, which is trusted.
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim);
        let scheme = match http.scheme.as_str() {
            s if s.eq_ignore_ascii_case("https") => "https",
            s if s.eq_ignore_ascii_case("http") => "http",
            _ => match forwarded {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            },
        };
        let client_ip = attrs
            .and_then(|a| a.source.as_ref())
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                envoy_types::ext_authz::v3::pb::Address::SocketAddress(s) => {
                    s.address.parse::<IpAddr>().ok()
                }
                _ => None,
            });
        let view = RequestView {
            listener: Listener::ExtAuthzGrpc,
            method: &method,
            scheme,
            host: &host,
            uri: &path,
            headers: &headers,
            client_ip,
        };
        let decision = self.gate.decide(&view).await;
        let outcome = decision.outcome();
        let resp = match decision {
            Decision::Skip => self.allow(None, &headers),
            Decision::Allow(grant) => self.allow(Some(&grant), &headers),
            Decision::Reply(reply) => deny(reply),
        };
        (outcome, resp)
    }

    /// Code 0: identity headers overwrite whatever the client sent, the
    /// unset ones (and other spellings seen) are removed, a refreshed
    /// session's cookies go to the client.
    fn allow(&self, grant: Option<&Grant>, seen: &HeaderMap) -> CheckResponse {
        let edits = super::upstream_edits(&self.gate, grant, seen);
        let headers_to_remove = edits.remove;
        let headers = edits
            .set
            .iter()
            .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
            .collect();
        let response_headers_to_add = grant
            .map(|g| {
                g.set_cookies
                    .iter()
                    .map(|c| {
                        option(
                            &http::header::SET_COOKIE,
                            c,
                            HeaderAppendAction::AppendIfExistsOrAdd,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                response_headers_to_add,
                ..Default::default()
            })),
            ..Default::default()
        }
    }
}

fn non_empty(s: &str) -> Option<Cow<'_, str>> {
    (!s.is_empty()).then_some(Cow::Borrowed(s))
}

/// A pseudo-header (`:authority`, `:path`, `:method`) from `headers` or
/// `header_map`.
fn pseudo<'a>(http: &'a HttpRequest, name: &str) -> Option<Cow<'a, str>> {
    if let Some(v) = http.headers.get(name).filter(|v| !v.is_empty()) {
        return Some(Cow::Borrowed(v.as_str()));
    }
    let h = http
        .header_map
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))?;
    if h.raw_value.is_empty() {
        non_empty(&h.value)
    } else {
        std::str::from_utf8(&h.raw_value).ok().map(Cow::Borrowed)
    }
}

fn option(name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// The gRPC code for a deny: what Envoy logs, while the client gets our
/// `denied_response` as it is.
fn deny_code(reply: &Reply) -> i32 {
    match (reply.outcome, reply.status) {
        (Outcome::Forbidden, _) | (_, StatusCode::FORBIDDEN) => PERMISSION_DENIED,
        (_, s) if s.is_server_error() => UNAVAILABLE,
        (_, StatusCode::BAD_REQUEST) => INVALID_ARGUMENT,
        _ => UNAUTHENTICATED,
    }
}

/// A deny carrying our whole reply: status, each header (each `Set-Cookie`
/// its own option, appended), body.
fn deny(reply: Reply) -> CheckResponse {
    let code = deny_code(&reply);
    let headers = reply
        .headers
        .iter()
        .map(|(n, v)| {
            let action = if n == http::header::SET_COOKIE {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            option(n, v, action)
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(reply.status.as_u16()),
            }),
            headers,
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        })),
        ..Default::default()
    }
}

fn deny_plain(code: i32, http_status: u16, message: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: message.to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(http_status),
            }),
            headers: vec![option(
                &http::header::CACHE_CONTROL,
                &HeaderValue::from_static("no-store"),
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            )],
            body: String::new(),
        })),
        ..Default::default()
    }
}

/// Headers from `headers`, else from `header_map` (Envoy fills one or the
/// other). Pseudo-headers and invalid names are skipped. Envoy joins repeated
/// lines with `,`; the cookie jar splits `cookie` on `, name=` again.
fn header_map(http: &HttpRequest) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut add = |k: &str, v: &[u8]| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            map.append(n, v);
        }
    };
    if !http.headers.is_empty() {
        for (k, v) in &http.headers {
            add(k, v.as_bytes());
        }
    } else if let Some(hm) = &http.header_map {
        for h in &hm.headers {
            let v = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            add(&h.key, v);
        }
    }
    map
}

#[tonic::async_trait]
impl Authorization for ExtAuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let answer = AssertUnwindSafe(self.check_request(request.get_ref()))
            .catch_unwind()
            .await;
        let (outcome, resp) = match answer {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("ext_authz gRPC check failed internally");
                self.gate.metrics.request(
                    Listener::ExtAuthzGrpc,
                    Outcome::Error,
                    started.elapsed(),
                );
                return Err(Status::internal("authorization check failed"));
            }
        };
        self.gate
            .metrics
            .request(Listener::ExtAuthzGrpc, outcome, started.elapsed());
        Ok(Response::new(resp))
    }
}

/// Runs the gRPC server (h2c) inside Pingora as a background service, so it
/// shares the process, the state and the shutdown.
pub struct GrpcService {
    gate: Arc<Gate>,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl GrpcService {
    /// Binds now so a taken port fails start-up, not later.
    pub fn bind(gate: Arc<Gate>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(GrpcService {
            gate,
            listener: Mutex::new(Some(listener)),
        })
    }
}

#[async_trait]
impl BackgroundService for GrpcService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "ext_authz gRPC listener failed");
                return;
            }
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<AuthorizationServer<ExtAuthzGrpc>>()
            .await;
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(AuthorizationServer::new(ExtAuthzGrpc::new(
                self.gate.clone(),
            )))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = shutdown.changed().await;
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "ext_authz gRPC server stopped");
        }
    }
}

/// Shared by the ext_authz unit tests: the demo IdP served on a loopback
/// port, a `Gate` discovered against it, and helpers to mint sessions and
/// walk a login.
#[cfg(test)]
pub(crate) mod testkit {
    use std::net::SocketAddr;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use http::header::{CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
    use http::{HeaderMap, HeaderName, HeaderValue, Method, Response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use crate::authz::{Decision, Identity, Listener, RequestView};
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

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    /// A minimal HTTP/1.1 server for the IdP: one request per connection.
    fn serve(listener: TcpListener, idp: DemoIdp) {
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let idp = idp.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or_default().split(' ');
                    let method = Method::from_bytes(first.next().unwrap_or("GET").as_bytes())
                        .unwrap_or(Method::GET);
                    let target = first.next().unwrap_or("/").to_owned();
                    let mut headers = HeaderMap::new();
                    for line in lines {
                        if let Some((k, v)) = line.split_once(':') {
                            if let (Ok(k), Ok(v)) = (
                                HeaderName::from_bytes(k.trim().as_bytes()),
                                HeaderValue::from_str(v.trim()),
                            ) {
                                headers.append(k, v);
                            }
                        }
                    }
                    let len = headers
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let resp =
                        idp.handle(&method, &target, &headers, &buf[head_end..head_end + len]);
                    let mut out = format!("HTTP/1.1 {}\r\n", resp.status()).into_bytes();
                    for (k, v) in resp.headers() {
                        if k != CONTENT_LENGTH && k != http::header::CONNECTION {
                            out.extend_from_slice(k.as_str().as_bytes());
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(v.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(
                        format!(
                            "content-length: {}\r\nconnection: close\r\n\r\n",
                            resp.body().len()
                        )
                        .as_bytes(),
                    );
                    out.extend_from_slice(resp.body());
                    let _ = sock.write_all(&out).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
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

    async fn start(
        server_extra: &str,
        cookie_extra: &str,
        skip_routes: &str,
        serve_idp: bool,
    ) -> Kit {
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

    fn view<'a>(uri: &'a str, headers: &'a HeaderMap) -> RequestView<'a> {
        RequestView {
            listener: Listener::ExtAuthzGrpc,
            method: "GET",
            scheme: "http",
            host: HOST,
            uri,
            headers,
            client_ip: None,
        }
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
                },
                sub: user.into(),
                sid: None,
                id_token: None,
                access_token: None,
                refresh_token: None,
                refreshed_at: now,
                expires_at: now + 3600,
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
            let Decision::Reply(first) = self.gate.decide(&view("/app", &none)).await else {
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
            let Decision::Reply(cb) = self.gate.decide(&view(&back, &with_csrf)).await else {
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
}

#[cfg(test)]
mod tests {
    use super::testkit::{self, Kit, HOST};
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderMap as PbHeaderMap;
    use envoy_types::pb::envoy::service::auth::v3::{attribute_context, AttributeContext};
    use std::collections::HashMap;

    fn request(path: &str, headers: &[(&str, &str)]) -> CheckRequest {
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in headers {
            // Envoy joins repeated lines with ",".
            map.entry(k.to_string())
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v)
                })
                .or_insert_with(|| v.to_string());
        }
        let http = attribute_context::HttpRequest {
            method: "GET".into(),
            host: HOST.into(),
            path: path.into(),
            scheme: "http".into(),
            headers: map,
            ..Default::default()
        };
        with_http(http)
    }

    fn with_http(http: attribute_context::HttpRequest) -> CheckRequest {
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(http),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    async fn check(kit: &Kit, req: &CheckRequest) -> CheckResponse {
        let svc = ExtAuthzGrpc::new(kit.gate.clone());
        // Through the tonic trait: every decision is Ok.
        svc.check(Request::new(req.clone()))
            .await
            .expect("a decision is never a gRPC error")
            .into_inner()
    }

    fn code(r: &CheckResponse) -> i32 {
        r.status.as_ref().unwrap().code
    }

    fn ok(r: &CheckResponse) -> &OkHttpResponse {
        match &r.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok,
            other => panic!("not an ok_response: {other:?}"),
        }
    }

    fn denied(r: &CheckResponse) -> &DeniedHttpResponse {
        match &r.http_response {
            Some(HttpResponse::DeniedResponse(d)) => d,
            other => panic!("not a denied_response: {other:?}"),
        }
    }

    fn options<'a>(opts: &'a [HeaderValueOption], name: &str) -> Vec<&'a HeaderValueOption> {
        opts.iter()
            .filter(|o| o.header.as_ref().unwrap().key == name)
            .collect()
    }

    fn value(o: &HeaderValueOption) -> &str {
        &o.header.as_ref().unwrap().value
    }

    #[tokio::test]
    async fn alice_is_ok_with_identity_headers_overwritten_and_only_unset_ones_removed() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("alice").await;
        let req = request(
            "/app?x=1",
            &[
                ("cookie", &cookie),
                ("x-auth-request-email", "evil@evil.test"),
                ("x_forwarded_email", "evil@evil.test"),
            ],
        );
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), OK);
        let ok = ok(&resp);
        for name in testkit::IDENTITY_SET {
            let set = options(&ok.headers, name);
            assert_eq!(set.len(), 1, "{name} once");
            assert_eq!(
                set[0].append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                "{name}"
            );
            assert!(!ok.headers_to_remove.iter().any(|r| r == name), "{name}");
        }
        assert_eq!(
            value(options(&ok.headers, "x-auth-request-email")[0]),
            "alice@example.com"
        );
        assert_eq!(
            value(options(&ok.headers, "x-forwarded-groups")[0]),
            "admins,devs"
        );
        for name in testkit::IDENTITY_UNSET {
            assert!(ok.headers_to_remove.iter().any(|r| r == name), "{name}");
            assert!(options(&ok.headers, name).is_empty());
        }
        assert!(
            ok.headers_to_remove
                .iter()
                .any(|r| r == "x_forwarded_email"),
            "{:?}",
            ok.headers_to_remove
        );
        assert!(ok.response_headers_to_add.is_empty());
    }

    #[tokio::test]
    async fn anonymous_browser_is_16_with_a_302_location_and_csrf_cookie() {
        let kit = testkit::kit("").await;
        let resp = check(&kit, &request("/app", &[])).await;
        assert_eq!(code(&resp), UNAUTHENTICATED);
        let d = denied(&resp);
        assert_eq!(d.status.as_ref().unwrap().code, 302);
        let location = options(&d.headers, "location");
        assert_eq!(location.len(), 1);
        assert!(value(location[0]).starts_with(&kit.issuer));
        let cookies = options(&d.headers, "set-cookie");
        assert_eq!(cookies.len(), 1);
        assert!(value(cookies[0]).starts_with("_oauth2_proxy_csrf"));
        assert_eq!(
            cookies[0].append_action,
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
        assert_eq!(value(options(&d.headers, "cache-control")[0]), "no-store");
    }

    #[tokio::test]
    async fn anonymous_api_call_is_16_with_401() {
        let kit = testkit::kit("").await;
        for req in [
            request("/api/x", &[]),
            request("/app", &[("accept", "application/json")]),
            request("/app", &[("x-requested-with", "XMLHttpRequest")]),
        ] {
            let resp = check(&kit, &req).await;
            assert_eq!(code(&resp), UNAUTHENTICATED);
            assert_eq!(denied(&resp).status.as_ref().unwrap().code, 401);
        }
    }

    #[tokio::test]
    async fn bob_is_7_with_403() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("bob").await;
        let resp = check(&kit, &request("/app", &[("cookie", &cookie)])).await;
        assert_eq!(code(&resp), PERMISSION_DENIED);
        assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403);
    }

    #[tokio::test]
    async fn skip_route_is_ok_without_identity_and_removes_every_identity_header() {
        let kit = testkit::kit("").await;
        let req = request("/public/a", &[("x-auth-request-user", "evil")]);
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), OK);
        let ok = ok(&resp);
        assert!(ok.headers.is_empty());
        for name in testkit::IDENTITY_SET
            .iter()
            .chain(testkit::IDENTITY_UNSET.iter())
        {
            assert!(ok.headers_to_remove.iter().any(|r| r == name), "{name}");
        }
    }

    #[tokio::test]
    async fn no_http_attributes_is_7_and_never_a_panic() {
        let kit = testkit::kit_without_idp().await;
        for req in [
            CheckRequest::default(),
            CheckRequest {
                attributes: Some(AttributeContext::default()),
            },
            CheckRequest {
                attributes: Some(AttributeContext {
                    request: Some(attribute_context::Request::default()),
                    ..Default::default()
                }),
            },
        ] {
            let resp = check(&kit, &req).await;
            assert_eq!(code(&resp), PERMISSION_DENIED);
            assert_eq!(denied(&resp).status.as_ref().unwrap().code, 403);
        }
    }

    #[tokio::test]
    async fn a_path_not_starting_with_a_slash_is_a_400_deny_even_on_a_skip_route() {
        let kit = testkit::kit_with_skip_routes(r#"["^/$"]"#).await;
        for path in ["foo:/admin", "admin", "*"] {
            let resp = check(&kit, &request(path, &[])).await;
            assert_ne!(code(&resp), OK, "{path}");
            assert_eq!(denied(&resp).status.as_ref().unwrap().code, 400, "{path}");
        }
        assert_eq!(code(&check(&kit, &request("/", &[])).await), OK);
    }

    #[tokio::test]
    async fn a_cookie_joined_with_commas_from_several_lines_still_yields_the_session() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("alice").await;
        // Two lines, Envoy-joined: "theme=dark,_oauth2_proxy=...".
        let req = request("/app", &[("cookie", "theme=dark"), ("cookie", &cookie)]);
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), OK, "{resp:?}");
        let spaced = format!("theme=dark, {}, lang=en", cookie.replace("; ", ", "));
        let resp = check(&kit, &request("/app", &[("cookie", &spaced)])).await;
        assert_eq!(code(&resp), OK, "{resp:?}");
    }

    #[tokio::test]
    async fn headers_come_from_header_map_when_headers_is_empty() {
        let kit = testkit::kit("").await;
        let cookie = kit.session_cookie("alice").await;
        let pb = |k: &str, v: &str, raw: bool| PbHeaderValue {
            key: k.into(),
            value: if raw { String::new() } else { v.into() },
            raw_value: if raw {
                v.as_bytes().to_vec()
            } else {
                Vec::new()
            },
        };
        for raw in [true, false] {
            // No host, path or method fields: the pseudo-headers stand in.
            let http = attribute_context::HttpRequest {
                header_map: Some(PbHeaderMap {
                    headers: vec![
                        pb(":authority", HOST, raw),
                        pb(":path", "/app", raw),
                        pb(":method", "GET", raw),
                        pb("cookie", &cookie, raw),
                    ],
                }),
                ..Default::default()
            };
            let resp = check(&kit, &with_http(http)).await;
            assert_eq!(code(&resp), OK, "raw={raw} {resp:?}");
        }
        // `headers` wins when both are present.
        let mut req = request("/app", &[("accept", "application/json")]);
        if let Some(http) = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.header_map = Some(PbHeaderMap {
                headers: vec![pb("cookie", &cookie, true)],
            });
        }
        let resp = check(&kit, &req).await;
        assert_eq!(code(&resp), UNAUTHENTICATED);
    }

    #[tokio::test]
    async fn login_round_trip_through_checks_sets_each_cookie_as_its_own_option() {
        let kit = testkit::kit("").await;
        let first = check(&kit, &request("/app?y=2", &[])).await;
        let d = denied(&first);
        let location = value(options(&d.headers, "location")[0]).to_owned();
        let csrf = testkit::cookie_pair(value(options(&d.headers, "set-cookie")[0]));
        let back = kit.login_at_idp(&location, "alice");
        let cb = check(&kit, &request(&back, &[("cookie", &csrf)])).await;
        assert_eq!(code(&cb), UNAUTHENTICATED);
        let d = denied(&cb);
        assert_eq!(d.status.as_ref().unwrap().code, 302);
        assert_eq!(
            value(options(&d.headers, "location")[0]),
            format!("http://{HOST}/app?y=2")
        );
        let cookies = options(&d.headers, "set-cookie");
        assert!(cookies.len() >= 2, "{cookies:?}");
        for c in &cookies {
            assert_eq!(
                c.append_action,
                HeaderAppendAction::AppendIfExistsOrAdd as i32
            );
            assert!(!value(c).contains('\n'));
        }
        let session = cookies
            .iter()
            .map(|c| value(c))
            .filter(|c| !c.starts_with("_oauth2_proxy_csrf"))
            .map(testkit::cookie_pair)
            .collect::<Vec<_>>()
            .join("; ");
        let next = check(&kit, &request("/app?y=2", &[("cookie", &session)])).await;
        assert_eq!(code(&next), OK);
        // A bad state is a 4xx deny, never a session.
        let bad = back.replace("state=", "state=x");
        let resp = check(&kit, &request(&bad, &[("cookie", &csrf)])).await;
        assert_ne!(code(&resp), OK);
        let d = denied(&resp);
        let status = d.status.as_ref().unwrap().code;
        assert!((400..500).contains(&status), "{status}");
        assert!(options(&d.headers, "set-cookie")
            .iter()
            .all(|c| value(c).starts_with("_oauth2_proxy_csrf")));
    }

    #[tokio::test]
    async fn a_refreshed_session_goes_to_the_client_in_response_headers_to_add() {
        let kit = testkit::kit_with_cookie("  refresh: 1s\n").await;
        let cookie = kit.login_cookie("alice").await;
        let stale = kit.age_session(&cookie).await;
        let resp = check(&kit, &request("/app", &[("cookie", &stale)])).await;
        assert_eq!(code(&resp), OK);
        let ok = ok(&resp);
        let cookies = options(&ok.response_headers_to_add, "set-cookie");
        assert!(
            cookies
                .iter()
                .any(|c| value(c).starts_with("_oauth2_proxy=")),
            "{cookies:?}"
        );
        for c in cookies {
            assert_eq!(
                c.append_action,
                HeaderAppendAction::AppendIfExistsOrAdd as i32
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_idp_is_a_5xx_deny_not_an_error_or_allow() {
        let kit = testkit::kit_without_idp().await;
        let resp = check(&kit, &request("/app", &[])).await;
        assert_eq!(code(&resp), UNAVAILABLE);
        let status = denied(&resp).status.as_ref().unwrap().code;
        assert!((500..600).contains(&status), "{status}");
    }

    #[tokio::test]
    async fn the_scheme_follows_the_request_then_x_forwarded_proto() {
        let kit = testkit::kit("").await;
        let redirect_uri = |r: &CheckResponse| {
            let loc = value(options(&denied(r).headers, "location")[0]).to_owned();
            url::Url::parse(&loc)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "redirect_uri")
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        let mut req = request("/app", &[("x-forwarded-proto", "https")]);
        let resp = check(&kit, &req).await;
        assert_eq!(
            redirect_uri(&resp),
            "http://app.example.test/oauth2/callback"
        );
        if let Some(http) = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            http.scheme.clear();
        }
        let resp = check(&kit, &req).await;
        assert_eq!(
            redirect_uri(&resp),
            "https://app.example.test/oauth2/callback"
        );
    }

    #[tokio::test]
    async fn an_ok_overwrites_cookie_without_authgates_cookies() {
        let kit = testkit::kit("").await;
        let alice = kit.session_cookie("alice").await;
        // One line, and several lines as Envoy joins them.
        let one = request(
            "/app",
            &[(
                "cookie",
                &format!("theme=dark; {alice}; _oauth2_proxy_csrf_ab=c; a=b"),
            )],
        );
        let joined = request(
            "/app",
            &[
                ("cookie", "theme=dark"),
                ("cookie", &alice),
                ("cookie", "a=b"),
            ],
        );
        for req in [one, joined] {
            let resp = check(&kit, &req).await;
            assert_eq!(code(&resp), OK, "{resp:?}");
            let ok = ok(&resp);
            let cookie = options(&ok.headers, "cookie");
            assert_eq!(cookie.len(), 1, "{:?}", ok.headers);
            assert_eq!(
                cookie[0].append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            );
            let kept = value(cookie[0]);
            assert!(!kept.contains("_oauth2_proxy"), "{kept}");
            assert!(
                kept.starts_with("theme=dark") && kept.ends_with("a=b"),
                "{kept}"
            );
            assert!(!ok.headers_to_remove.iter().any(|r| r == "cookie"));
        }
    }

    #[tokio::test]
    async fn an_ok_removes_cookie_when_only_authgates_cookies_were_sent() {
        let kit = testkit::kit("").await;
        let alice = kit.session_cookie("alice").await;
        for req in [
            request("/app", &[("cookie", &alice)]),
            request(
                "/public/x",
                &[("cookie", "_oauth2_proxy_1=a; _oauth2_proxy_csrf=b")],
            ),
        ] {
            let resp = check(&kit, &req).await;
            assert_eq!(code(&resp), OK, "{resp:?}");
            let ok = ok(&resp);
            assert!(
                options(&ok.headers, "cookie").is_empty(),
                "{:?}",
                ok.headers
            );
            assert!(
                ok.headers_to_remove.iter().any(|r| r == "cookie"),
                "{:?}",
                ok.headers_to_remove
            );
        }
    }

    #[tokio::test]
    async fn an_ok_leaves_cookie_alone_when_none_of_authgates_is_present() {
        let kit = testkit::kit("").await;
        for req in [
            request("/public/x", &[]),
            request(
                "/public/x",
                &[("cookie", "theme=dark; _oauth2_proxy_other=1")],
            ),
        ] {
            let resp = check(&kit, &req).await;
            let ok = ok(&resp);
            assert!(options(&ok.headers, "cookie").is_empty());
            assert!(!ok.headers_to_remove.iter().any(|r| r == "cookie"));
        }
    }
}
