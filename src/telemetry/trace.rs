//! OpenTelemetry tracing (`telemetry.otlp_endpoint`): one server span per
//! request on every listener, continuing an incoming W3C `traceparent` or
//! B3 (`b3`, or `X-B3-TraceId`/`X-B3-SpanId`/`X-B3-Sampled`), and the
//! `traceparent` the proxy passes upstream in place of the client's.
//!
//! Spans are `tracing` spans of target [`TARGET`], made OpenTelemetry
//! spans by `tracing-opentelemetry` (see `telemetry::init_run`) and exported
//! by [`pipeline`](super::pipeline). A span names only the method, the path
//! without its query, the listener, the status, the decision and the policy:
//! never a header, a cookie, a token, a query string or a user.
//!
//! Child spans, all of kind client and all under the request span when made
//! inside one: [`idp_call`] (discovery, JWKS, token code exchange and
//! refresh, userinfo), [`redis`] (one per command of the session store and
//! the refresh lock) and the upstream request ([`RequestSpan::upstream_started`]
//! to [`RequestSpan::upstream_answered`]). An IdP call made by the
//! background upkeep (discovery retries, a JWKS refresh outside a request)
//! has no request around it and is a root span of its own trace.
//! They carry no URL query, key, cookie, code, token or secret: IdP spans
//! the method, host, port and path of the endpoint; Redis spans only the
//! command name (never the key: a session key is the session id).
//!
//! Off (no endpoint), [`start`] is one load of a `OnceLock` and returns None:
//! no span, no header parsing; the client's trace headers go upstream as
//! they came. The child span constructors make the same check and return
//! [`tracing::Span::none`], whose `record` and `instrument` do nothing (the
//! log subscriber would otherwise see, and print, spans of [`TARGET`]).

use std::future::Future;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use http::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_propagator_b3::Propagator as B3;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use pingora_http::RequestHeader;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::pipeline::installed;
pub use super::pipeline::{flush, install, TraceError};
use crate::access_log::{without_query, Note};
use crate::authz::{Listener, Outcome};

/// The `tracing` target of the spans exported over OTLP. A span of this
/// target started inside a request (e.g. around an IdP call, under the
/// request span's `instrument`) becomes its child span.
pub const TARGET: &str = "authgate::otel";

/// The trace headers authgate replaces on the upstream request (W3C Trace
/// Context and both B3 forms), lower case.
pub const PROPAGATION_HEADERS: [&str; 8] = [
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// One request's server span (tracing on). Dropping it ends the span.
#[derive(Debug)]
pub struct RequestSpan {
    span: tracing::Span,
    /// The span's own ids (trace, span, sampled), read once at the start.
    ids: SpanContext,
    /// The parent came as B3: the upstream gets B3 headers too.
    b3: bool,
    /// The upstream request's client span, from the peer's choice to its
    /// response header.
    upstream: Option<tracing::Span>,
}

/// The span for a request on `listener` with `method` and `path` (its query
/// is not recorded), continuing the trace `headers` carry; None when tracing
/// is off.
pub fn start(
    listener: Listener,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> Option<RequestSpan> {
    if !installed() {
        return None;
    }
    Some(begin(listener, method, path, &Headers(headers)))
}

/// [`start`] for an ext_authz gRPC check: the original request's method,
/// path and trace headers as Envoy reports them in the `CheckRequest`.
pub fn start_check(req: &CheckRequest) -> Option<RequestSpan> {
    if !installed() {
        return None;
    }
    let http = req
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    Some(match http {
        Some(http) => begin(
            Listener::ExtAuthzGrpc,
            &http.method,
            &http.path,
            &CheckHeaders(http),
        ),
        None => begin(Listener::ExtAuthzGrpc, "", "", &NoHeaders),
    })
}

fn begin(listener: Listener, method: &str, path: &str, carrier: &dyn Extractor) -> RequestSpan {
    let (parent, b3) = extract(carrier);
    let span = tracing::info_span!(
        target: TARGET,
        "authgate.request",
        otel.kind = "server",
        http.request.method = known_method(method),
        url.path = without_query(path),
        authgate.listener = listener.as_str(),
        http.response.status_code = Empty,
        authgate.decision = Empty,
        authgate.rule = Empty,
        otel.status_code = Empty,
    );
    let _ = span.set_parent(parent);
    // Starts the OpenTelemetry span (the sampling decision) now, so the
    // trace id and the upstream's parent id are known from here on.
    let ids = span.context().span().span_context().clone();
    RequestSpan {
        span,
        ids,
        b3,
        upstream: None,
    }
}

/// The client span of one HTTP request to the IdP; `call` names it
/// (`discovery`, `jwks`, `token`, `refresh`, `userinfo`: the span is
/// `idp <call>`). Attributes: `http.request.method`, `server.address`,
/// `server.port` and `url.path` of `uri` (never its query), and the status
/// once [`answered`]. A span of the current one (the request's, inside a
/// request); [`tracing::Span::none`] when tracing is off.
pub fn idp_call(call: &'static str, method: &http::Method, uri: &http::Uri) -> tracing::Span {
    if !installed() {
        return tracing::Span::none();
    }
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let name = format!("idp {call}");
    tracing::info_span!(
        target: TARGET,
        "authgate.idp",
        otel.name = name.as_str(),
        otel.kind = "client",
        authgate.idp.call = call,
        http.request.method = known_method(method.as_str()),
        server.address = uri.host().unwrap_or(""),
        server.port = port,
        url.path = uri.path(),
        http.response.status_code = Empty,
        otel.status_code = Empty,
    )
}

/// Records the status of a client span's answer (0: none came); no answer
/// or a 4xx/5xx marks the span failed (OpenTelemetry HTTP client rule).
pub fn answered(span: &tracing::Span, status: u16) {
    if status > 0 {
        span.record("http.response.status_code", status);
    }
    if status == 0 || status >= 400 {
        span.record("otel.status_code", "error");
    }
}

/// The client span of one Redis command (or transaction) named `operation`
/// (`GET`, `SET`, `DEL`, ...: `db.operation.name`, also the span's name),
/// with `db.system.name = redis`; never a key or a value.
/// [`tracing::Span::none`] when tracing is off.
pub fn redis(operation: &'static str) -> tracing::Span {
    if !installed() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "authgate.redis",
        otel.name = operation,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = operation,
        otel.status_code = Empty,
    )
}

/// Runs `work` inside `span` and marks the span failed if it fails.
///
/// # Errors
/// `work`'s own, unchanged.
pub async fn within<T, E>(
    span: tracing::Span,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let result = work.instrument(span.clone()).await;
    if result.is_err() {
        span.record("otel.status_code", "error");
    }
    result
}

/// The incoming trace: W3C first, else B3; the flag says it was B3. A
/// request without any of their headers is not handed to the propagators.
fn extract(carrier: &dyn Extractor) -> (Context, bool) {
    if carrier.get("traceparent").is_some() {
        let w3c = TraceContextPropagator::new().extract(carrier);
        if w3c.span().span_context().is_valid() {
            return (w3c, false);
        }
    }
    if carrier.get("b3").is_none() && carrier.get("x-b3-traceid").is_none() {
        return (Context::new(), false);
    }
    let b3 = B3::new().extract(carrier);
    let found = b3.span().span_context().is_valid();
    (b3, found)
}

/// Appends `bytes` as lower-case hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push_str(&hex::encode(bytes));
}

/// The method for `http.request.method`: a standard one as it is, anything
/// else `_OTHER` (OpenTelemetry HTTP semantic conventions), so a client
/// cannot put text of its own into a span.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("_OTHER")
}

impl RequestSpan {
    /// The `tracing` span, to `instrument` the work done for the request.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The trace id (32 lower-case hex digits): the incoming one when the
    /// request continued a trace.
    pub fn trace_id(&self) -> String {
        let mut hex = String::with_capacity(32);
        push_hex(&mut hex, &self.ids.trace_id().to_bytes());
        hex
    }

    /// Records what the decision noted (the policy that applied) and puts
    /// the span's trace id in the decision log's note.
    pub fn noted(&self, note: Option<&mut Note>) {
        if let Some(note) = note {
            if !note.rule.is_empty() {
                self.span.record("authgate.rule", note.rule.as_str());
            }
            note.trace_id = self.trace_id();
        }
    }

    /// Ends the span with the status answered (0: none was written) and the
    /// decision; a 5xx (or none) marks it failed.
    pub fn finish(mut self, status: u16, outcome: Outcome) {
        // An upstream span still open got no response header: it failed,
        // and it ends before its parent.
        if let Some(upstream) = self.upstream.take() {
            answered(&upstream, 0);
        }
        if status > 0 {
            self.span.record("http.response.status_code", status);
        }
        self.span.record("authgate.decision", outcome.as_str());
        if status == 0 || status >= 500 {
            self.span.record("otel.status_code", "error");
        }
    }

    /// Opens the upstream request's client span (`upstream`), a child of
    /// this one, for the peer at `addr`: `server.address` and
    /// `server.port`. A retry's new peer ends the previous span as failed.
    pub fn upstream_started(&mut self, addr: &pingora::protocols::l4::socket::SocketAddr) {
        if let Some(previous) = self.upstream.take() {
            answered(&previous, 0);
        }
        let (host, port) = match addr.as_inet() {
            Some(inet) => (inet.ip().to_string(), inet.port()),
            // A Unix socket: its path is the address (OpenTelemetry's rule).
            None => (addr.to_string(), 0),
        };
        let span = tracing::info_span!(
            target: TARGET,
            parent: &self.span,
            "authgate.upstream",
            otel.name = "upstream",
            otel.kind = "client",
            server.address = host.as_str(),
            server.port = Empty,
            http.response.status_code = Empty,
            otel.status_code = Empty,
        );
        if port > 0 {
            span.record("server.port", port);
        }
        self.upstream = Some(span);
    }

    /// Ends the upstream span with the status of the upstream's response
    /// header (a no-op without an open upstream span).
    pub fn upstream_answered(&mut self, status: u16) {
        if let Some(upstream) = self.upstream.take() {
            answered(&upstream, status);
        }
    }

    /// Replaces the upstream request's trace headers with this span's:
    /// `traceparent` (and `tracestate` when the trace has one), plus the B3
    /// headers when the request came with B3. Never appends: whatever the
    /// client sent under these names is removed first.
    ///
    /// # Errors
    /// A header Pingora refuses (not expected: the values are hex).
    pub fn inject(&self, upstream: &mut RequestHeader) -> pingora::Result<()> {
        let ids = &self.ids;
        if !ids.is_valid() {
            return Ok(());
        }
        // One pass over the names present (a handful) instead of a lookup
        // of each of the eight; only a client's own trace headers are removed.
        let present: Vec<&'static str> = PROPAGATION_HEADERS
            .into_iter()
            .filter(|p| upstream.headers.keys().any(|k| k.as_str() == *p))
            .collect();
        for name in present {
            upstream.remove_header(name);
        }
        // W3C Trace Context level 1, version 00 (what the SDK's propagator
        // writes), without its generic formatting on every request.
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        push_hex(&mut traceparent, &ids.trace_id().to_bytes());
        traceparent.push('-');
        push_hex(&mut traceparent, &ids.span_id().to_bytes());
        traceparent.push_str(if ids.is_sampled() { "-01" } else { "-00" });
        upstream.insert_header("traceparent", traceparent)?;
        let state = ids.trace_state().header();
        if !state.is_empty() {
            upstream.insert_header("tracestate", state)?;
        }
        if self.b3 {
            let cx = Context::new().with_remote_span_context(ids.clone());
            let mut set = Collect(Vec::with_capacity(4));
            B3::new().inject_context(&cx, &mut set);
            for (name, value) in set.0 {
                upstream.insert_header(name, value)?;
            }
        }
        Ok(())
    }
}

/// Request headers as the propagators read them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The original request's headers in a `CheckRequest`: Envoy's `headers`
/// map (lower-case keys), else its `header_map`.
struct CheckHeaders<'a>(&'a HttpRequest);

impl Extractor for CheckHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if !self.0.headers.is_empty() {
            return self.0.headers.get(key).map(String::as_str);
        }
        let h = self
            .0
            .header_map
            .as_ref()?
            .headers
            .iter()
            .find(|h| h.key.eq_ignore_ascii_case(key))?;
        if h.raw_value.is_empty() {
            Some(h.value.as_str())
        } else {
            std::str::from_utf8(&h.raw_value).ok()
        }
    }

    fn keys(&self) -> Vec<&str> {
        if !self.0.headers.is_empty() {
            return self.0.headers.keys().map(String::as_str).collect();
        }
        self.0
            .header_map
            .iter()
            .flat_map(|m| m.headers.iter().map(|h| h.key.as_str()))
            .collect()
    }
}

struct NoHeaders;

impl Extractor for NoHeaders {
    fn get(&self, _key: &str) -> Option<&str> {
        None
    }

    fn keys(&self) -> Vec<&str> {
        Vec::new()
    }
}

/// The headers a propagator writes, in order.
struct Collect(Vec<(String, String)>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_ascii_lowercase(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn ids(cx: &Context) -> (String, String, bool) {
        let span = cx.span();
        let sc = span.span_context();
        (
            sc.trace_id().to_string(),
            sc.span_id().to_string(),
            sc.is_sampled(),
        )
    }

    #[test]
    fn w3c_wins_then_b3_single_then_b3_multi() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let both = headers(&[
            ("traceparent", &tp),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        ]);
        let (cx, b3) = extract(&Headers(&both));
        assert_eq!(ids(&cx), (TRACE.into(), PARENT.into(), true));
        assert!(!b3);

        let single = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")]);
        let (cx, b3) = extract(&Headers(&single));
        assert_eq!(ids(&cx).0, "80f198ee56343ba864fe8b2a57d3eff7");
        assert_eq!(ids(&cx).1, "e457b5a2e4d86bd1");
        assert!(b3);

        let multi = headers(&[
            ("X-B3-TraceId", "463ac35c9f6413ad48485a3953bb6124"),
            ("X-B3-SpanId", "a2fb4a1d1a96d312"),
            ("X-B3-Sampled", "1"),
        ]);
        let (cx, b3) = extract(&Headers(&multi));
        assert_eq!(
            ids(&cx),
            (
                "463ac35c9f6413ad48485a3953bb6124".into(),
                "a2fb4a1d1a96d312".into(),
                true
            )
        );
        assert!(b3);

        let (cx, b3) = extract(&Headers(&headers(&[("traceparent", "00-zz-yy-01")])));
        assert!(!cx.span().span_context().is_valid());
        assert!(!b3);
    }

    #[test]
    fn check_request_headers_are_read_from_either_field() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let mut http = HttpRequest::default();
        http.headers.insert("traceparent".into(), tp.clone());
        assert_eq!(CheckHeaders(&http).get("traceparent"), Some(tp.as_str()));
        let raw = HttpRequest {
            header_map: Some(envoy_types::pb::envoy::config::core::v3::HeaderMap {
                headers: vec![envoy_types::pb::envoy::config::core::v3::HeaderValue {
                    key: "TraceParent".into(),
                    raw_value: tp.clone().into_bytes(),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        };
        assert_eq!(CheckHeaders(&raw).get("traceparent"), Some(tp.as_str()));
        assert_eq!(CheckHeaders(&raw).get("b3"), None);
    }

    fn upstream_with(pairs: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for (n, v) in pairs {
            req.append_header(n.to_string(), *v).unwrap();
        }
        req
    }

    fn all(req: &RequestHeader, name: &str) -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn ours(b3: bool, sampled: bool) -> RequestSpan {
        use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        RequestSpan {
            span: tracing::Span::none(),
            ids: SpanContext::new(
                TraceId::from_hex(TRACE).unwrap(),
                SpanId::from_hex("b7ad6b7169203331").unwrap(),
                flags,
                false,
                TraceState::from_key_value([("vendor", "kept")]).unwrap(),
            ),
            b3,
            upstream: None,
        }
    }

    #[test]
    fn the_upstream_gets_our_span_in_place_of_every_client_trace_header() {
        let tp = format!("00-{TRACE}-{PARENT}-01");
        let mut up = upstream_with(&[
            ("traceparent", &tp),
            (
                "TraceParent",
                "00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01",
            ),
            ("tracestate", "vendor=client"),
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", "0020000000000001"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("x-keep", "1"),
        ]);
        ours(false, true).inject(&mut up).unwrap();
        assert_eq!(
            all(&up, "traceparent"),
            [format!("00-{TRACE}-b7ad6b7169203331-01")]
        );
        assert_eq!(all(&up, "tracestate"), ["vendor=kept"]);
        for gone in ["b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid"] {
            assert!(all(&up, gone).is_empty(), "{gone} left");
        }
        assert_eq!(all(&up, "x-keep"), ["1"]);

        let mut up =
            upstream_with(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]);
        ours(true, false).inject(&mut up).unwrap();
        assert_eq!(
            all(&up, "traceparent"),
            [format!("00-{TRACE}-b7ad6b7169203331-00")]
        );
        assert_eq!(all(&up, "x-b3-traceid"), [TRACE]);
        assert_eq!(all(&up, "x-b3-spanid"), ["b7ad6b7169203331"]);
        assert_eq!(all(&up, "x-b3-sampled"), ["0"]);
        assert!(all(&up, "b3").is_empty());
    }

    #[test]
    fn only_standard_methods_reach_a_span() {
        assert_eq!(known_method("GET"), "GET");
        assert_eq!(known_method("PATCH"), "PATCH");
        assert_eq!(known_method("get"), "_OTHER");
        assert_eq!(known_method("X-SECRET-abc"), "_OTHER");
    }

    #[test]
    fn off_means_no_span() {
        // The unit tests never install a pipeline.
        assert!(start(Listener::Proxy, "GET", "/", &HeaderMap::new()).is_none());
        assert!(start_check(&CheckRequest::default()).is_none());
        let uri: http::Uri = "https://idp.example/token?code=x".parse().unwrap();
        assert!(idp_call("token", &http::Method::POST, &uri).is_none());
        assert!(redis("GET").is_none());
    }
}
