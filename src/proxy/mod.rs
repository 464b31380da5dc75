//! The proxy front end: a Pingora `ProxyHttp` that asks `Gate::decide` in
//! `request_filter`, answers itself when the decision is a reply, and
//! otherwise forwards with the client's identity headers replaced by ours.

mod head_deadline;
pub mod upstream;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora_http::{RequestHeader, ResponseHeader};

use crate::authz::edits::CookieRewrite;
use crate::authz::{
    admit, Decision, Endpoint, Listener, Outcome, Received, Reply, Trust, UpstreamEdits,
};
use crate::endpoints::pages;
use crate::gate::Gate;
use crate::reload::GateHandle;
pub use head_deadline::{HeadDeadline, HEAD_TIMEOUT};
pub use upstream::Upstreams;

/// `/oauth2/backchannel_logout` bodies are a form with one JWT: 64 KiB.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

/// The proxy front end (`server.listen`).
pub struct AuthProxy {
    gate: GateHandle,
    tls: bool,
}

/// Per-request state across Pingora's phases.
pub struct Ctx {
    /// The gate this request is decided with, from start to end (a reload
    /// meanwhile applies to the next request).
    gate: Arc<Gate>,
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
    /// The decision log's note (`telemetry.access_log` on), and the
    /// upstream's address once one is picked.
    ///
    /// This and `trace` are boxed: Pingora's per-request future holds the
    /// context in several of its states and is copied whole into a box on
    /// every request; both are off by default.
    log: Option<Box<crate::access_log::Note>>,
    upstream_addr: String,
    /// The request's server span (`telemetry.otlp_endpoint` set), ended in
    /// `logging`; its `traceparent` replaces the client's upstream.
    trace: Option<Box<crate::telemetry::trace::RequestSpan>>,
}

/// What `request_filter` does after the decision.
enum Step {
    Answer(Reply),
    Forward(usize),
    BackchannelLogout,
}

impl AuthProxy {
    /// The proxy over `gate`; `tls` when `listen` terminates TLS.
    pub fn new(gate: impl Into<GateHandle>, tls: bool) -> Self {
        AuthProxy {
            gate: gate.into(),
            tls,
        }
    }

    /// Admits the request, asks the decision and picks the upstream.
    async fn step(&self, session: &Session, ctx: &mut Ctx) -> Step {
        let gate = ctx.gate.clone();
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
        let admitted = match admit(received, Trust::Proxies(&gate.cfg.server.trusted_proxies)) {
            Ok(a) => a,
            Err(reply) => return Step::Answer(reply),
        };
        ctx.scheme = admitted.scheme();
        ctx.host.clear();
        ctx.host.push_str(admitted.host());
        ctx.forwarded_trusted = admitted.forwarded_trusted();
        crate::access_log::note_request(&gate, &admitted.view());
        if admitted.endpoint() == Some(Endpoint::BackchannelLogout) {
            return Step::BackchannelLogout;
        }
        let decision = gate.decide(&admitted.view()).await;
        let grant = match decision {
            Decision::Reply(reply) => return Step::Answer(reply),
            Decision::Skip => None,
            Decision::Allow(grant) => Some(grant),
        };
        let Some(upstream) = gate.upstreams.select(req.uri.path()) else {
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
        ctx.edits = Some(gate.upstream_edits(grant, &req.headers));
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
            gate: self.gate.load(),
            started: Instant::now(),
            outcome: Outcome::Error,
            edits: None,
            upstream: 0,
            scheme: "http",
            host: String::new(),
            client_ip: None,
            forwarded_trusted: false,
            log: None,
            upstream_addr: String::new(),
            trace: None,
        }
    }

    /// Runs once the request head is read: admission, then the decision
    /// (which answers `/ping`, `/ready` and the `/oauth2/*` endpoints
    /// itself), then the upstream.
    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.client_ip = client_ip(session);
        let on = crate::access_log::enabled(&ctx.gate);
        let req = session.req_header();
        ctx.trace = crate::telemetry::trace::start(
            Listener::Proxy,
            req.method.as_str(),
            req.uri.path(),
            &req.headers,
        )
        .map(Box::new);
        // Tracing records the policy too, so it collects the note as well.
        let span = ctx.trace.as_ref().map(|t| t.span().clone());
        let noted = crate::access_log::scope(on || span.is_some(), self.step(session, ctx));
        // Traced requests are boxed: Pingora copies this future, whole, into
        // a box on every request, so rare paths must not widen it.
        let (step, mut log) = match span {
            Some(span) => Box::pin(tracing::Instrument::instrument(noted, span)).await,
            None => noted.await,
        };
        if let Some(trace) = &ctx.trace {
            trace.noted(log.as_mut());
        }
        ctx.log = log.filter(|_| on).map(Box::new);
        let reply = match step {
            Step::Forward(upstream) => {
                ctx.upstream = upstream;
                return Ok(false);
            }
            Step::Answer(reply) => reply,
            Step::BackchannelLogout => Box::pin(backchannel_logout(session, &ctx.gate)).await,
        };
        ctx.outcome = reply.outcome;
        Box::pin(write_reply(session, reply)).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // An unresolved upstream host is an upstream failure: 502, counted.
        let peer = ctx.gate.upstreams.peer(ctx.upstream).map_err(|e| {
            let why = Some(e.to_string().into());
            Error::create(ErrorType::ConnectNoRoute, ErrorSource::Upstream, why, None)
        })?;
        if ctx.log.is_some() {
            ctx.upstream_addr = pingora::upstreams::peer::Peer::address(&*peer).to_string();
        }
        if let Some(trace) = &mut ctx.trace {
            trace.upstream_started(pingora::upstreams::peer::Peer::address(&*peer));
        }
        Ok(peer)
    }

    /// A failed connect may mean the backend moved: re-resolve soon.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        e: Box<Error>,
    ) -> Box<Error> {
        let addr = pingora::upstreams::peer::Peer::address(peer)
            .as_inet()
            .copied();
        ctx.gate.upstreams.connect_failed(addr);
        e
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
        // The identity headers, then X-Forwarded-For/-Proto/-Host and
        // `traceparent` (a `Host` override replaces the one there).
        let adds = ctx.edits.as_ref().map_or(0, |e| e.set.len()) + 4;
        edit_headers(upstream, adds, |headers| forwarding_headers(headers, ctx))?;
        if let Some(trace) = &ctx.trace {
            trace.inject(upstream)?;
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
        if let Some(trace) = &mut ctx.trace {
            trace.upstream_answered(resp.status.as_u16());
        }
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
            ctx.gate.metrics.upstream_error();
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

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        ctx.gate
            .metrics
            .request(Listener::Proxy, ctx.outcome, ctx.started.elapsed());
        if let Some(trace) = ctx.trace.take() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            trace.finish(status, ctx.outcome);
        }
        if let Some(note) = &ctx.log {
            let entry = crate::access_log::Entry {
                listener: Listener::Proxy,
                status: session.response_written().map_or(0, |r| r.status.as_u16()),
                outcome: ctx.outcome,
                upstream: &ctx.upstream_addr,
                elapsed: ctx.started.elapsed(),
            };
            let req = session.req_header();
            let fallback = (req.method.as_str(), ctx.host.as_str(), req.uri.path());
            crate::access_log::emit(&entry, note, fallback);
        }
    }
}

const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

/// The decision's header edits and the forwarding headers, on the upstream
/// request's header map: spoofed identity headers out, authgate's cookies
/// out of `Cookie`, the identity headers and `X-Forwarded-For`/`-Proto`/
/// `-Host` in, `Host` replaced when the route says so.
fn forwarding_headers(headers: &mut http::HeaderMap, ctx: &Ctx) -> Result<()> {
    use http::header::HOST;
    if let Some(edits) = &ctx.edits {
        for name in &edits.spoofed {
            headers.remove(name);
        }
        if let CookieRewrite::Lines(lines) = &edits.cookie {
            headers.remove(http::header::COOKIE);
            for line in lines {
                put(headers, http::header::COOKIE, line.clone(), true)?;
            }
        }
        for h in edits.set.iter() {
            put(headers, h.name.clone(), h.value.clone(), false)?;
        }
    }
    if let Some(ip) = ctx.client_ip {
        let mut xff = String::with_capacity(48);
        if let Some(prev) = headers
            .get(X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
            .filter(|_| ctx.forwarded_trusted)
        {
            xff.push_str(prev);
            xff.push_str(", ");
        }
        push_ip(&mut xff, ip);
        put(headers, X_FORWARDED_FOR, value(xff)?, false)?;
    }
    put(
        headers,
        X_FORWARDED_PROTO,
        HeaderValue::from_static(ctx.scheme),
        false,
    )?;
    if !ctx.host.is_empty() {
        put(headers, X_FORWARDED_HOST, value(ctx.host.as_str())?, false)?;
    }
    if let Some(host) = ctx.gate.upstreams.host_override(ctx.upstream) {
        put(headers, HOST, value(host)?, false)?;
    }
    Ok(())
}

/// Sets (or with `append`, adds) one upstream header. `http`'s plain
/// `insert` panics past its size limit; this refuses instead.
fn put(
    headers: &mut http::HeaderMap,
    name: http::HeaderName,
    value: HeaderValue,
    append: bool,
) -> Result<()> {
    let done = if append {
        headers.try_append(name, value).map(drop)
    } else {
        headers.try_insert(name, value).map(drop)
    };
    done.or_err(ErrorType::InvalidHTTPHeader, "too many upstream headers")
}

/// A header value from text authgate forwards (a client's `Host`, its
/// `X-Forwarded-For` chain): 400 when it is not a valid field value.
fn value(text: impl TryInto<HeaderValue>) -> Result<HeaderValue> {
    text.try_into()
        .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "invalid header value"))
}

/// Runs `edit` on the upstream request's header map, and leaves the
/// request without Pingora's second map of header-name spellings, with
/// room for `adds` more headers. HTTP field names are case-insensitive
/// (RFC 9110 §5.1) and Envoy forwards them lower-case too. Pingora's
/// `insert_header` parses and copies each name again, and with that map
/// inserts it twice while both maps grow: about 700 instructions per
/// header, where an insert of a prebuilt `HeaderName` is about 150. The
/// request-target is kept byte for byte (absolute-form, non-UTF-8).
fn edit_headers(
    upstream: &mut RequestHeader,
    adds: usize,
    edit: impl FnOnce(&mut http::HeaderMap) -> Result<()>,
) -> Result<()> {
    let from_uri = upstream.uri.path_and_query().map(|p| p.as_str().as_bytes());
    let raw = (from_uri != Some(upstream.raw_path())).then(|| upstream.raw_path().to_vec());
    let end_stream = upstream.send_end_stream();
    let blank = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts = http::request::Parts::from(std::mem::replace(upstream, blank));
    parts.headers.reserve(adds);
    let edited = edit(&mut parts.headers);
    *upstream = RequestHeader::from(parts);
    if let Some(raw) = raw {
        upstream.set_raw_path(&raw)?;
    }
    if let Some(end_stream) = end_stream {
        upstream.set_send_end_stream(end_stream);
    }
    edited
}

/// Appends `ip` as `X-Forwarded-For` writes it. IPv4 digit by digit: its
/// `Display` goes through the formatting machinery, about 1,300
/// instructions on every proxied request.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
        }
        IpAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(out, "{ip}");
        }
    }
}

/// `/oauth2/backchannel_logout`: the one endpoint that needs the body.
async fn backchannel_logout(session: &mut Session, gate: &Gate) -> Reply {
    let method = session.req_header().method.clone();
    match read_body(session, MAX_LOGOUT_BODY).await {
        Some(b) => gate.backchannel_logout(method.as_str(), &b).await,
        None => pages::text(StatusCode::PAYLOAD_TOO_LARGE, Outcome::Error, "too large"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(target: &[u8], headers: &[(&str, &str)]) -> RequestHeader {
        let mut h = RequestHeader::build("GET", target, None).unwrap();
        for (n, v) in headers {
            h.append_header(n.to_string(), *v).unwrap();
        }
        h
    }

    #[test]
    fn header_edits_keep_every_other_header_value_and_the_target() {
        let targets: [&[u8]; 4] = [
            b"/app?x=1&y=%2F",
            b"http://upstream.example/app?q",
            b"/caf\xc3\xa9/\xff?x",
            b"*",
        ];
        for target in targets {
            let mut h = header(
                target,
                &[
                    ("Host", "a.example"),
                    ("X-Custom", "1"),
                    ("Cookie", "a=1"),
                    ("cookie", "b=2"),
                ],
            );
            assert!(h.has_case());
            let raw = h.raw_path().to_vec();
            let utf8 = h.raw_path_is_utf8();
            edit_headers(&mut h, 12, |headers| {
                put(
                    headers,
                    http::header::ACCEPT,
                    HeaderValue::from_static("*/*"),
                    false,
                )
            })
            .unwrap();
            assert!(!h.has_case());
            assert_eq!(h.raw_path(), raw.as_slice(), "{target:?}");
            assert_eq!(h.raw_path_is_utf8(), utf8);
            assert_eq!(h.method, http::Method::GET);
            let cookies: Vec<_> = h.headers.get_all("cookie").iter().collect();
            assert_eq!(cookies, ["a=1", "b=2"]);
            assert_eq!(h.headers["x-custom"], "1");
            assert_eq!(h.headers["accept"], "*/*");
            assert_eq!(h.headers.len(), 5);
            // Names go lower-case on the wire, except the ones Pingora
            // title-cases itself (`Host`).
            let mut wire = Vec::new();
            h.header_to_h1_wire(&mut wire);
            let wire = String::from_utf8(wire).unwrap();
            assert!(wire.contains("Host: a.example\r\n"), "{wire}");
            assert!(wire.contains("x-custom: 1\r\n"), "{wire}");
        }
    }

    /// Pingora's per-request future holds the context in several states and
    /// is copied whole into a box on every request: what is off by default
    /// (the access-log note, the trace span) stays boxed.
    #[test]
    fn the_proxy_context_stays_small() {
        let size = std::mem::size_of::<Ctx>();
        assert!(size <= 288, "Ctx is {size} bytes");
    }

    #[test]
    fn client_addresses_are_written_as_display_writes_them() {
        let mut samples: Vec<IpAddr> = Vec::new();
        for a in [0u8, 1, 9, 10, 99, 100, 127, 199, 200, 255] {
            for b in [0u8, 7, 42, 250] {
                samples.push(IpAddr::from([a, b, 255 - a, a / 3]));
            }
        }
        samples.push("::1".parse().unwrap());
        samples.push("2001:db8::ff00:42:8329".parse().unwrap());
        samples.push("::ffff:192.0.2.1".parse().unwrap());
        for ip in samples {
            let mut out = String::from("x, ");
            push_ip(&mut out, ip);
            assert_eq!(out, format!("x, {ip}"));
        }
    }
}
