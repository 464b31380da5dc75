//! Wire → view: what a `CheckRequest` says about the original request, in
//! the request edge's terms (`Received`).

use std::borrow::Cow;
use std::net::IpAddr;

use envoy_types::ext_authz::v3::pb::{Address, CheckRequest};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::authz::{admit, Listener, Received, Reply, RequestView, Trust};

/// The original request's facts, borrowed from a `CheckRequest`, with its
/// headers as a `HeaderMap`.
pub(super) struct CheckedRequest<'r> {
    pub method: Cow<'r, str>,
    pub path: Cow<'r, str>,
    pub host: Cow<'r, str>,
    pub scheme: &'r str,
    pub headers: HeaderMap,
    pub client_ip: Option<IpAddr>,
}

impl CheckedRequest<'_> {
    /// What the request edge receives for this check: the service and
    /// [`admit_check`] hand `admit` exactly this.
    pub(super) fn received(&self) -> Received<'_> {
        Received {
            listener: Listener::ExtAuthzGrpc,
            method: &self.method,
            target: self.path.as_bytes(),
            authority: &self.host,
            scheme: Some(self.scheme).filter(|s| !s.is_empty()),
            headers: &self.headers,
            client_ip: self.client_ip,
            path_prefix: "",
        }
    }
}

/// The wire → view conversion of the check service alone, without a
/// decision: reads `req` and admits it at the request edge as `Check` does
/// (`Trust::Caller`), then hands `with` the [`RequestView`] the decision
/// would read, or the edge's own answer (400 bad target, 431 too large).
/// `None` when the check has no HTTP attributes (the service's 403).
///
/// Public for the `grpc_check` fuzz target and its corpus replay
/// (`fuzz/`, `tests/fuzz_corpus.rs`); never panics on any `CheckRequest`.
pub fn admit_check<T>(
    req: &CheckRequest,
    with: impl FnOnce(Result<RequestView<'_>, Reply>) -> T,
) -> Option<T> {
    let checked = read(req)?;
    Some(match admit(checked.received(), Trust::Caller) {
        Ok(admitted) => with(Ok(admitted.view())),
        Err(reply) => with(Err(reply)),
    })
}

/// The HTTP attributes of a check, or `None` when it has none (Istio's TCP
/// filter sends no HTTP attributes: nothing to decide on).
pub(super) fn read(req: &CheckRequest) -> Option<CheckedRequest<'_>> {
    let attrs = req.attributes.as_ref()?;
    let http = attrs.request.as_ref()?.http.as_ref()?;
    let headers = header_map(http);
    // Envoy fills `host`, `path` and `method`; the pseudo-headers are the
    // same facts for callers that only send headers.
    let host = non_empty(&http.host)
        .or_else(|| pseudo(http, ":authority"))
        .or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(|h| Cow::Owned(h.to_owned()))
        })
        .unwrap_or_default();
    let path = non_empty(&http.path)
        .or_else(|| pseudo(http, ":path"))
        .unwrap_or(Cow::Borrowed("/"));
    let method = non_empty(&http.method)
        .or_else(|| pseudo(http, ":method"))
        .unwrap_or(Cow::Borrowed("GET"));
    let client_ip = attrs
        .source
        .as_ref()
        .and_then(|p| p.address.as_ref())
        .and_then(|a| a.address.as_ref())
        .and_then(|a| match a {
            Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok(),
            _ => None,
        });
    Some(CheckedRequest {
        method,
        path,
        host,
        // Envoy sets `scheme` from the request's X-Forwarded-Proto.
        scheme: &http.scheme,
        headers,
        client_ip,
    })
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
