//! The proxy front end: a Pingora `ProxyHttp` that asks `Gate::decide` in
//! `request_filter`, answers itself when the decision is a reply, and
//! otherwise forwards with the client's identity headers replaced by ours.

mod head_deadline;
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

use crate::authz::edits::CookieRewrite;
use crate::authz::{
    admit, Decision, Endpoint, Listener, Outcome, Received, Reply, Trust, UpstreamEdits,
};
use crate::endpoints::pages;
use crate::gate::Gate;
pub use head_deadline::{HeadDeadline, HEAD_TIMEOUT};
pub use upstream::Upstreams;

/// `/oauth2/backchannel_logout` bodies are a form with one JWT: 64 KiB.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

/// The proxy front end (`server.listen`).
pub struct AuthProxy {
    gate: Arc<Gate>,
    upstreams: Upstreams,
    tls: bool,
}

/// Per-request state across Pingora's phases.
pub struct Ctx {
    started: Instant,
    outcome: Outcome,
    /// What the allow (or skip) does to the upstream request and response.
    edits: Option<UpstreamEdits>,
    upstream: usize,
    scheme: &'static str,
    host: String,
    client_ip: Option<IpAddr>,
    /// The client is a trusted proxy: its `X-Forwarded-For` is extended.
    forwarded_trusted: bool,
}

/// What `request_filter` does after the decision.
enum Step {
    Answer(Reply),
    Forward(usize),
    BackchannelLogout,
}

impl AuthProxy {
    /// The proxy over `gate`; `tls` when `listen` terminates TLS.
    pub fn new(gate: Arc<Gate>, tls: bool) -> Self {
        let upstreams = Upstreams::new(&gate.cfg.upstreams);
        AuthProxy {
            gate,
            upstreams,
            tls,
        }
    }

    /// Admits the request, asks the decision and picks the upstream.
    async fn step(&self, session: &Session, ctx: &mut Ctx) -> Step {
        let req = session.req_header();
        let authority = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .unwrap_or("");
        let received = Received {
            listener: Listener::Proxy,
            method: req.method.as_str(),
            target: req.raw_path(),
            authority,
            scheme: self.tls.then_some("https"),
            headers: &req.headers,
            client_ip: ctx.client_ip,
            path_prefix: "",
        };
        let admitted = match admit(
            received,
            Trust::Proxies(&self.gate.cfg.server.trusted_proxies),
        ) {
            Ok(a) => a,
            Err(reply) => return Step::Answer(reply),
        };
        ctx.scheme = admitted.scheme();
        ctx.host.clear();
        ctx.host.push_str(admitted.host());
        ctx.forwarded_trusted = admitted.forwarded_trusted();
        if admitted.endpoint() == Some(Endpoint::BackchannelLogout) {
            return Step::BackchannelLogout;
        }
        let decision = self.gate.decide(&admitted.view()).await;
        let grant = match decision {
            Decision::Reply(reply) => return Step::Answer(reply),
            Decision::Skip => None,
            Decision::Allow(grant) => Some(grant),
        };
        let Some(upstream) = self.upstreams.select(req.uri.path()) else {
            return Step::Answer(pages::text(
                StatusCode::NOT_FOUND,
                Outcome::Error,
                "No upstream serves this path.\n",
            ));
        };
        ctx.outcome = if grant.is_some() {
            Outcome::Allowed
        } else {
            Outcome::Skipped
        };
        ctx.edits = Some(self.gate.upstream_edits(grant, &req.headers));
        Step::Forward(upstream)
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
            edits: None,
            upstream: 0,
            scheme: "http",
            host: String::new(),
            client_ip: None,
            forwarded_trusted: false,
        }
    }

    /// Runs once the request head is read: admission, then the decision
    /// (which answers `/ping`, `/ready` and the `/oauth2/*` endpoints
    /// itself), then the upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.client_ip = client_ip(session);
        let reply = match self.step(session, ctx).await {
            Step::Forward(upstream) => {
                ctx.upstream = upstream;
                return Ok(false);
            }
            Step::Answer(reply) => reply,
            Step::BackchannelLogout => {
                let method = session.req_header().method.clone();
                match read_body(session, MAX_LOGOUT_BODY).await {
                    Some(b) => self.gate.backchannel_logout(method.as_str(), &b).await,
                    None => pages::text(StatusCode::PAYLOAD_TOO_LARGE, Outcome::Error, "too large"),
                }
            }
        };
        ctx.outcome = reply.outcome;
        write_reply(session, reply).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.upstreams
            .peer(ctx.upstream)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream selected"))
    }

    /// Replaces identity: every protected header the client sent goes
    /// (whatever its case or `_` spelling), authgate's cookies go, then the
    /// grant's identity headers are set; `X-Forwarded-*` tell the upstream
    /// what the client used.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(edits) = &ctx.edits {
            for name in &edits.spoofed {
                upstream.remove_header(name);
            }
            apply_cookie_edit(&edits.cookie, upstream)?;
            for (name, value) in &edits.set {
                upstream.insert_header(name.clone(), value.clone())?;
            }
        }
        if let Some(ip) = ctx.client_ip {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) if ctx.forwarded_trusted => format!("{prev}, {ip}"),
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
        if let Some(edits) = &ctx.edits {
            for c in &edits.client_cookies {
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

/// Rewrites the upstream `Cookie` lines as the edit says, each kept line
/// as it was.
fn apply_cookie_edit(edit: &CookieRewrite, upstream: &mut RequestHeader) -> Result<()> {
    if let CookieRewrite::Lines(lines) = edit {
        upstream.remove_header(&http::header::COOKIE);
        for line in lines {
            upstream.append_header(http::header::COOKIE, line.clone())?;
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
