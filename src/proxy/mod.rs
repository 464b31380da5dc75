//! The proxy front end: a Pingora `ProxyHttp` that asks `Gate::decide` in
//! `request_filter`, answers itself when the decision is a reply, and
//! otherwise forwards with the client's identity headers replaced by ours.

mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::authz::{path, Decision, Grant, Listener, Outcome, Reply, RequestView};
use crate::endpoints::pages;
use crate::gate::Gate;
use crate::session::cookies::strip_own_cookies_bytes;
pub use upstream::Upstreams;

/// Requests whose headers exceed this get 431 and are never forwarded.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// `/oauth2/backchannel_logout` bodies are a form with one JWT.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

pub struct AuthProxy {
    gate: Arc<Gate>,
    upstreams: Upstreams,
    tls: bool,
}

/// Per-request state across Pingora's phases.
pub struct Ctx {
    started: Instant,
    outcome: Outcome,
    grant: Option<Grant>,
    upstream: usize,
    scheme: &'static str,
    host: String,
    client_ip: Option<IpAddr>,
}

impl AuthProxy {
    pub fn new(gate: Arc<Gate>, tls: bool) -> Self {
        let upstreams = Upstreams::new(&gate.cfg.upstreams);
        AuthProxy {
            gate,
            upstreams,
            tls,
        }
    }

    async fn answer(&self, session: &mut Session, reply: Reply, ctx: &mut Ctx) -> Result<bool> {
        ctx.outcome = reply.outcome;
        write_reply(session, reply).await?;
        Ok(true)
    }
}

/// Writes a reply keeping the connection reusable (not `respond_error`,
/// which turns keep-alive off: wrong for the 302 of every login).
pub(crate) async fn write_reply(session: &mut Session, reply: Reply) -> Result<()> {
    let mut resp = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in reply.headers {
        resp.append_header(name, value)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, reply.body.len())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only || reply.body.is_empty())
        .await?;
    if !head_only && !reply.body.is_empty() {
        session.write_response_body(Some(reply.body), true).await?;
    }
    Ok(())
}

/// The request target exactly as the client sent it, when it is one we can
/// decide on: origin-form (`/path?q`) or absolute-form `http(s)://...`.
/// Pingora parses targets like `foo:/admin` into a `Uri` of `/` while
/// forwarding the raw bytes: deciding on the parsed form would let such a
/// target ride a skip route to `/admin`.
pub(crate) fn request_target(req: &RequestHeader) -> Option<&str> {
    if !req.raw_path_is_utf8() {
        return None;
    }
    let raw = std::str::from_utf8(req.raw_path()).ok()?;
    let absolute = raw
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("https://"))
        || raw
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"));
    (raw.starts_with('/') || absolute).then_some(raw)
}

/// Size of the request head as the client sent it, roughly: names, values
/// and the separators.
pub(crate) fn header_bytes(req: &RequestHeader) -> usize {
    req.headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + display_len(&req.uri)
}

/// Length of a value's `Display` form without allocating it.
fn display_len(v: &impl std::fmt::Display) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = std::fmt::write(&mut c, format_args!("{v}"));
    c.0
}

/// The scheme and host the client used. `X-Forwarded-Proto`/`-Host` count
/// only from `trusted` peers (`server.trusted_proxies`), or always when
/// `trust_all` (the ext_authz caller is Envoy itself).
pub(crate) fn scheme_and_host<'a>(
    req: &'a RequestHeader,
    client: Option<IpAddr>,
    gate: &Gate,
    tls: bool,
    trust_all: bool,
) -> (&'static str, &'a str) {
    let trusted = trust_all
        || client.is_some_and(|ip| {
            gate.cfg
                .server
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&ip))
        });
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut scheme = if tls { "https" } else { "http" };
    let mut host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    if trusted {
        match header("x-forwarded-proto") {
            Some(p) if p.eq_ignore_ascii_case("https") => scheme = "https",
            Some(p) if p.eq_ignore_ascii_case("http") => scheme = "http",
            _ => {}
        }
        if !trust_all {
            if let Some(h) = header("x-forwarded-host") {
                host = h;
            }
        }
    }
    (scheme, host)
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

#[async_trait]
impl ProxyHttp for AuthProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            outcome: Outcome::Error,
            grant: None,
            upstream: 0,
            scheme: "http",
            host: String::new(),
            client_ip: None,
        }
    }

    /// Runs once the request head is read: answers `/ping`, `/ready` and the
    /// `listen`-only endpoints, then asks the decision.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        if header_bytes(session.req_header()) > MAX_HEADER_BYTES {
            let reply = pages::text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Outcome::Error,
                "Request header fields too large\n",
            );
            return self.answer(session, reply, ctx).await;
        }
        ctx.client_ip = client_ip(session);
        let (scheme, host) = scheme_and_host(
            session.req_header(),
            ctx.client_ip,
            &self.gate,
            self.tls,
            false,
        );
        ctx.scheme = scheme;
        ctx.host = host.to_owned();
        let req = session.req_header();
        let Some(uri) = request_target(req).map(str::to_owned) else {
            let reply = pages::text(
                StatusCode::BAD_REQUEST,
                Outcome::Error,
                "Bad request target\n",
            );
            return self.answer(session, reply, ctx).await;
        };
        let norm = path::normalize(&uri).into_owned();
        let method = req.method.as_str().to_owned();
        let view = RequestView {
            listener: Listener::Proxy,
            method: &method,
            scheme,
            host: &ctx.host,
            uri: &uri,
            headers: &req.headers,
            client_ip: ctx.client_ip,
        };
        let reply = match norm.as_str() {
            "/ping" => pages::text(StatusCode::OK, Outcome::Skipped, "OK"),
            "/ready" => {
                if self.gate.is_ready() {
                    pages::text(StatusCode::OK, Outcome::Skipped, "OK")
                } else {
                    pages::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        Outcome::Skipped,
                        "not ready",
                    )
                }
            }
            "/oauth2/auth" => self.gate.auth_check(&view).await,
            "/oauth2/userinfo" => self.gate.userinfo(&view).await,
            "/oauth2/backchannel_logout" => {
                let body = read_body(session, MAX_LOGOUT_BODY).await;
                let method = session.req_header().method.clone();
                match body {
                    Some(b) => self.gate.backchannel_logout(method.as_str(), &b).await,
                    None => pages::text(StatusCode::PAYLOAD_TOO_LARGE, Outcome::Error, "too large"),
                }
            }
            _ => {
                let decision = self.gate.decide(&view).await;
                let upstream = self.upstreams.select(req.uri.path());
                match (decision, upstream) {
                    (Decision::Reply(reply), _) => reply,
                    (_, None) => pages::text(
                        StatusCode::NOT_FOUND,
                        Outcome::Error,
                        "No upstream serves this path.\n",
                    ),
                    (Decision::Skip, Some(i)) => {
                        ctx.outcome = Outcome::Skipped;
                        ctx.upstream = i;
                        return Ok(false);
                    }
                    (Decision::Allow(grant), Some(i)) => {
                        ctx.outcome = Outcome::Allowed;
                        ctx.grant = Some(grant);
                        ctx.upstream = i;
                        return Ok(false);
                    }
                }
            }
        };
        self.answer(session, reply, ctx).await
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.upstreams
            .peer(ctx.upstream)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream selected"))
    }

    /// Replaces identity: every protected header the client sent goes
    /// (whatever its case or `_` spelling), then ours are set.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Most requests carry none: look before allocating the list.
        let is_protected = |n: &http::HeaderName| self.gate.headers.is_protected(n.as_str());
        if upstream.headers.keys().any(is_protected) {
            let spoofed: Vec<http::HeaderName> = upstream
                .headers
                .keys()
                .filter(|n| is_protected(n))
                .cloned()
                .collect();
            for name in spoofed {
                upstream.remove_header(&name);
            }
        }
        strip_cookies(upstream, &self.gate.cfg.cookie.name)?;
        if let Some(grant) = &ctx.grant {
            for (name, value) in self.gate.headers.values(grant) {
                upstream.insert_header(name, value)?;
            }
        }
        if let Some(ip) = ctx.client_ip {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev)
                    if self
                        .gate
                        .cfg
                        .server
                        .trusted_proxies
                        .iter()
                        .any(|n| n.contains(&ip)) =>
                {
                    format!("{prev}, {ip}")
                }
                _ => ip.to_string(),
            };
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        upstream.insert_header("x-forwarded-proto", ctx.scheme)?;
        if !ctx.host.is_empty() {
            upstream.insert_header("x-forwarded-host", ctx.host.as_str())?;
        }
        if let Some(host) = self.upstreams.host_override(ctx.upstream) {
            upstream.insert_header(http::header::HOST, host)?;
        }
        Ok(())
    }

    /// A refreshed session's cookies ride on the upstream's response.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(grant) = &ctx.grant {
            for c in &grant.set_cookies {
                resp.append_header(http::header::SET_COOKIE, c.clone())?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let code = match e.etype() {
            ErrorType::HTTPStatus(c) => *c,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                _ => 500,
            },
        };
        if matches!(e.esource(), ErrorSource::Upstream) {
            self.gate.metrics.upstream_error();
            tracing::warn!(error = ?e.etype(), "upstream request failed");
        }
        ctx.outcome = Outcome::Error;
        if code > 0 && session.response_written().is_none() {
            // The connection is not reused (below): say so, or clients reuse
            // it for their next request and get a reset.
            session.set_keepalive(None);
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            let reply = pages::text(
                status,
                Outcome::Error,
                "Bad gateway: the upstream could not be reached.\n",
            );
            let reply = if status == StatusCode::BAD_GATEWAY {
                reply
            } else {
                pages::text(status, Outcome::Error, "Request failed.\n")
            };
            let _ = write_reply(session, reply).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, _session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        self.gate
            .metrics
            .request(Listener::Proxy, ctx.outcome, ctx.started.elapsed());
    }
}

/// Removes authgate's own cookies from what goes upstream.
fn strip_cookies(upstream: &mut RequestHeader, name: &str) -> Result<()> {
    let lines: Vec<http::HeaderValue> = upstream
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .cloned()
        .collect();
    if lines.is_empty() {
        return Ok(());
    }
    upstream.remove_header(&http::header::COOKIE);
    for line in lines {
        match strip_own_cookies_bytes(line.as_bytes(), name) {
            Some(std::borrow::Cow::Borrowed(_)) => {
                upstream.append_header(http::header::COOKIE, line)?;
            }
            Some(std::borrow::Cow::Owned(kept)) => {
                if let Ok(v) = http::HeaderValue::from_bytes(&kept) {
                    upstream.append_header(http::header::COOKIE, v)?;
                }
            }
            None => {}
        }
    }
    Ok(())
}

async fn read_body(session: &mut Session, limit: usize) -> Option<Bytes> {
    let mut buf = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return None;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Some(Bytes::from(buf)),
            Err(_) => return Some(Bytes::from(buf)),
        }
    }
}
