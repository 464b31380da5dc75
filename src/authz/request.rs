//! The request edge: what any listener received, turned into the
//! [`RequestView`] the decision reads. Admission (431 above 64 KiB of
//! headers, 400 for a target authgate cannot decide on), the scheme, host
//! and client address under the listener's own trust rule, the normalised
//! path and the endpoint are worked out here once, the same way for the
//! proxy, the ext_authz HTTP check and the ext_authz gRPC check. For
//! `/oauth2/auth` asked by a trusted forward-auth caller, the original
//! request it reports ([`Original`](super::Original)) is worked out here too, under the same
//! trust rule and with the same path normalisation.
//!
//! Pure: never blocks, never panics, never logs.

use std::borrow::Cow;
use std::net::IpAddr;

use http::{HeaderMap, StatusCode};
use ipnet::IpNet;

use super::original::{self, Reported};
use super::{path, Endpoint, Listener, Outcome, Reply, RequestView};
use crate::endpoints::pages;

/// Requests whose headers exceed this many bytes (names, values and their
/// separators, plus the target) get 431 and are neither decided nor
/// forwarded, on every listener. 64 KiB: above nginx's and Envoy's defaults
/// for a whole request head (RFC 6585 §5).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Whose `X-Forwarded-*` headers are believed about the client's scheme and
/// host.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'c> {
    /// The proxy (`listen`): `X-Forwarded-Proto` and `X-Forwarded-Host`
    /// count only when the TCP peer is in these networks
    /// (`server.trusted_proxies`); otherwise the client could claim any.
    Proxies(&'c [IpNet]),
    /// The ext_authz listeners: the caller is Envoy, which reports the
    /// original request. Its scheme (the `CheckRequest`'s, else
    /// `X-Forwarded-Proto`) is believed; the host is the original request's
    /// own authority, never `X-Forwarded-Host`.
    Caller,
}

/// What a front end received, borrowed from its own types (Pingora's
/// `RequestHeader`, an ext_authz `CheckRequest`).
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// The listener that received it.
    pub listener: Listener,
    /// The method as sent (`GET`, ...).
    pub method: &'a str,
    /// The request target exactly as sent: raw bytes, not necessarily UTF-8.
    pub target: &'a [u8],
    /// The authority the request named (`Host`, `:authority`, the
    /// `CheckRequest`'s `host`); empty when it named none.
    pub authority: &'a str,
    /// The scheme the transport itself reports: `https` on a TLS listener,
    /// the `CheckRequest`'s `scheme`; `None` when it says nothing.
    pub scheme: Option<&'a str>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The client: the TCP peer on `listen` and the ext_authz HTTP listener,
    /// the `CheckRequest`'s source address on gRPC.
    pub client_ip: Option<IpAddr>,
    /// Envoy's `path_prefix` to remove from the target (ext_authz HTTP
    /// only; empty for none). A trailing `/` is ignored.
    pub path_prefix: &'a str,
}

/// A request admitted for a decision. [`Admitted::view`] lends the
/// decision its [`RequestView`].
#[derive(Debug)]
pub struct Admitted<'a> {
    listener: Listener,
    method: &'a str,
    scheme: &'static str,
    host: &'a str,
    uri: Cow<'a, str>,
    path: Cow<'a, str>,
    endpoint: Option<Endpoint>,
    headers: &'a HeaderMap,
    client_ip: Option<IpAddr>,
    forwarded_trusted: bool,
    original: Option<Reported<'a>>,
}

impl<'a> Admitted<'a> {
    /// The view the decision reads.
    pub fn view(&self) -> RequestView<'_> {
        RequestView {
            listener: self.listener,
            method: self.method,
            scheme: self.scheme,
            host: self.host,
            uri: &self.uri,
            path: &self.path,
            endpoint: self.endpoint,
            headers: self.headers,
            client_ip: self.client_ip,
            original: self.original.as_ref().map(Reported::view),
        }
    }

    /// `http` or `https`, as believed under the listener's trust rule.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// `host[:port]` as the client addressed it (may be empty).
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// authgate's own endpoint this request names on its listener, if any.
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.endpoint
    }

    /// Whether the client is a trusted proxy whose `X-Forwarded-*` headers
    /// were believed (always false under [`Trust::Caller`]).
    pub fn forwarded_trusted(&self) -> bool {
        self.forwarded_trusted
    }
}

/// Admits a request for a decision, or answers it: 431 when its headers
/// exceed [`MAX_HEADER_BYTES`], 400 when its target is neither origin-form
/// (`/path?q`) nor absolute-form (`http(s)://...`) UTF-8. Pingora parses
/// targets like `foo:/admin` into `/` while forwarding the raw bytes:
/// deciding on anything but the raw target would let such a target ride a
/// skip route. Ambiguous targets (`/public/..;/admin`) are admitted and
/// decided as protected by the decision.
///
/// `/oauth2/auth` on `listen` from a trusted proxy (`server.trusted_proxies`)
/// also carries the [`Original`](super::Original) request its headers report, and takes its
/// host when they agree; from any other caller those headers are ignored.
///
/// Called the same way by every front end; the reply it refuses with is
/// the whole answer (`Cache-Control: no-store`, outcome `error`).
pub fn admit<'a>(rx: Received<'a>, trust: Trust<'_>) -> Result<Admitted<'a>, Reply> {
    if head_bytes(rx.target, rx.headers) > MAX_HEADER_BYTES {
        return Err(pages::text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Outcome::Error,
            "Request header fields too large\n",
        ));
    }
    let Some(target) = decidable_target(rx.target) else {
        return Err(pages::text(
            StatusCode::BAD_REQUEST,
            Outcome::Error,
            "Bad request target\n",
        ));
    };
    let (scheme, host, forwarded_trusted) = scheme_and_host(&rx, trust);
    let (uri, path) = match strip_path_prefix(rx.path_prefix, target) {
        Cow::Borrowed(uri) => (Cow::Borrowed(uri), path::normalize(uri)),
        Cow::Owned(uri) => {
            let path = Cow::Owned(path::normalize(&uri).into_owned());
            (Cow::Owned(uri), path)
        }
    };
    let endpoint = Endpoint::resolve(&path, rx.listener);
    // Only a trusted proxy (never the ext_authz caller, whose own request
    // is already the original) reports an original request, and only to
    // the forward-auth endpoint.
    let original = (endpoint == Some(Endpoint::Auth) && forwarded_trusted)
        .then(|| original::reported(rx.headers, host))
        .flatten();
    // The call is about the original host: a refreshed session's cookie is
    // scoped for it, not for the `Host` ingress-nginx's auth call names
    // (authgate's own service) when only `X-Original-URL` reports it.
    let host = match &original {
        Some(o) if !o.conflicting => o.host,
        _ => host,
    };
    Ok(Admitted {
        listener: rx.listener,
        method: rx.method,
        scheme,
        host,
        endpoint,
        original,
        uri,
        path,
        headers: rx.headers,
        client_ip: rx.client_ip,
        forwarded_trusted,
    })
}

/// Size of the request head as the client sent it, roughly: the target,
/// and each header's name, value and separators.
fn head_bytes(target: &[u8], headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + target.len()
}

/// The target when authgate can decide on it: UTF-8, origin-form or
/// absolute-form `http(s)://`.
fn decidable_target(raw: &[u8]) -> Option<&str> {
    let raw = std::str::from_utf8(raw).ok()?;
    let has_prefix = |p: &str| {
        raw.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    (raw.starts_with('/') || has_prefix("http://") || has_prefix("https://")).then_some(raw)
}

/// The first value of a forwarding header, trimmed; `None` when absent or empty.
pub(super) fn forwarded<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `http`/`https` when `s` is one of them, whatever its case.
fn known_scheme(s: &str) -> Option<&'static str> {
    if s.eq_ignore_ascii_case("https") {
        Some("https")
    } else if s.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// The scheme and host the client used, and whether `X-Forwarded-*` was
/// believed, under the listener's trust rule.
fn scheme_and_host<'a>(rx: &Received<'a>, trust: Trust<'_>) -> (&'static str, &'a str, bool) {
    let transport = rx.scheme.and_then(known_scheme);
    let xfp = || forwarded(rx.headers, "x-forwarded-proto").and_then(known_scheme);
    match trust {
        Trust::Caller => (
            transport.or_else(xfp).unwrap_or("http"),
            rx.authority,
            false,
        ),
        Trust::Proxies(nets) => {
            let trusted = rx
                .client_ip
                .is_some_and(|ip| nets.iter().any(|n| n.contains(&ip)));
            let base = transport.unwrap_or("http");
            if !trusted {
                return (base, rx.authority, false);
            }
            let scheme = xfp().unwrap_or(base);
            let host = forwarded(rx.headers, "x-forwarded-host").unwrap_or(rx.authority);
            (scheme, host, true)
        }
    }
}

/// The path and query Envoy asked about, without its `path_prefix`.
/// `/prefix?x` is `/?x`; a target outside the prefix is decided as it is.
/// A trailing `/` on the prefix is ignored.
pub fn strip_path_prefix<'a>(prefix: &str, target: &'a str) -> Cow<'a, str> {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Cow::Borrowed(target);
    }
    match target.strip_prefix(prefix) {
        Some(rest) if rest.starts_with('/') => Cow::Borrowed(rest),
        Some(rest) if rest.is_empty() || rest.starts_with('?') => Cow::Owned(format!("/{rest}")),
        _ => Cow::Borrowed(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn received<'a>(listener: Listener, target: &'a [u8], headers: &'a HeaderMap) -> Received<'a> {
        Received {
            listener,
            method: "GET",
            target,
            authority: "app.example.test",
            scheme: None,
            headers,
            client_ip: Some([10, 0, 0, 1].into()),
            path_prefix: "",
        }
    }

    #[test]
    fn the_path_prefix_is_stripped_whatever_its_trailing_slash() {
        assert_eq!(strip_path_prefix("", "/a?b"), "/a?b");
        assert_eq!(strip_path_prefix("/", "/a?b"), "/a?b");
        assert_eq!(strip_path_prefix("/authz", "/authz/a?b"), "/a?b");
        assert_eq!(strip_path_prefix("/authz/", "/authz/a?b"), "/a?b");
        assert_eq!(strip_path_prefix("/authz", "/authz"), "/");
        assert_eq!(strip_path_prefix("/authz", "/authz?rd=1"), "/?rd=1");
        assert_eq!(
            strip_path_prefix("/authz", "/authz/oauth2/callback?x"),
            "/oauth2/callback?x"
        );
        // Not under the prefix: decided as sent, never mangled.
        assert_eq!(strip_path_prefix("/authz", "/authzother"), "/authzother");
        assert_eq!(strip_path_prefix("/authz", "/other"), "/other");
    }

    #[test]
    fn every_listener_refuses_oversized_heads_and_undecidable_targets_alike() {
        let mut big = HeaderMap::new();
        big.insert(
            "x-big",
            HeaderValue::from_str(&"a".repeat(MAX_HEADER_BYTES)).unwrap(),
        );
        let none = HeaderMap::new();
        for l in [
            Listener::Proxy,
            Listener::ExtAuthzHttp,
            Listener::ExtAuthzGrpc,
        ] {
            let r = admit(received(l, b"/", &big), Trust::Caller).unwrap_err();
            assert_eq!(
                r.status,
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "{l:?}"
            );
            for bad in [
                &b"foo:/admin"[..],
                b"admin",
                b"\xff/x",
                b"/x\xff",
                b"",
                b"*",
            ] {
                let r = admit(received(l, bad, &none), Trust::Caller).unwrap_err();
                assert_eq!(r.status, StatusCode::BAD_REQUEST, "{l:?} {bad:?}");
            }
            for good in [&b"/"[..], b"/a?b", b"http://h/x", b"HTTPS://h/x"] {
                assert!(
                    admit(received(l, good, &none), Trust::Caller).is_ok(),
                    "{good:?}"
                );
            }
        }
    }

    #[test]
    fn the_path_is_normalised_once_and_the_endpoint_resolved_per_listener() {
        let none = HeaderMap::new();
        let a = admit(
            received(Listener::Proxy, b"/x/../ping?y", &none),
            Trust::Caller,
        )
        .unwrap();
        assert_eq!(a.view().path, "/ping");
        assert_eq!(a.view().uri, "/x/../ping?y");
        assert_eq!(a.endpoint(), Some(Endpoint::Ping));
        let a = admit(
            received(Listener::ExtAuthzHttp, b"/ping", &none),
            Trust::Caller,
        )
        .unwrap();
        assert_eq!(a.endpoint(), None);
        let mut rx = received(Listener::ExtAuthzHttp, b"/authz?rd=1", &none);
        rx.path_prefix = "/authz/";
        let a = admit(rx, Trust::Caller).unwrap();
        assert_eq!((a.view().uri, a.view().path), ("/?rd=1", "/"));
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies_and_the_ext_authz_caller() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("public.example"),
        );
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let other: Vec<IpNet> = vec!["192.168.0.0/16".parse().unwrap()];
        let rx = received(Listener::Proxy, b"/", &h);
        let a = admit(rx, Trust::Proxies(&trusted)).unwrap();
        assert_eq!(
            (a.scheme(), a.host(), a.forwarded_trusted()),
            ("https", "public.example", true)
        );
        let a = admit(rx, Trust::Proxies(&other)).unwrap();
        assert_eq!(
            (a.scheme(), a.host(), a.forwarded_trusted()),
            ("http", "app.example.test", false)
        );
        // A TLS listener stays https unless a trusted proxy says otherwise.
        let tls = Received {
            scheme: Some("https"),
            ..rx
        };
        assert_eq!(
            admit(tls, Trust::Proxies(&other)).unwrap().scheme(),
            "https"
        );
        // The ext_authz caller's X-Forwarded-Proto counts; its X-Forwarded-Host does not.
        let a = admit(rx, Trust::Caller).unwrap();
        assert_eq!((a.scheme(), a.host()), ("https", "app.example.test"));
        // The CheckRequest's own scheme wins over the header.
        let grpc = Received {
            scheme: Some("http"),
            ..rx
        };
        assert_eq!(admit(grpc, Trust::Caller).unwrap().scheme(), "http");
        let odd = Received {
            scheme: Some("ws"),
            ..rx
        };
        assert_eq!(admit(odd, Trust::Caller).unwrap().scheme(), "https");
    }

    #[test]
    fn only_a_trusted_proxy_calling_the_auth_endpoint_reports_an_original_request() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-method", HeaderValue::from_static("OPTIONS"));
        h.insert("x-forwarded-uri", HeaderValue::from_static("/public/"));
        h.insert(
            "x-original-url",
            HeaderValue::from_static("http://h/public/"),
        );
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let other: Vec<IpNet> = vec!["192.168.0.0/16".parse().unwrap()];
        let auth = received(Listener::Proxy, b"/oauth2/auth", &h);
        assert!(admit(auth, Trust::Proxies(&trusted))
            .unwrap()
            .view()
            .original
            .is_some());
        // An untrusted caller's headers are ignored.
        let a = admit(auth, Trust::Proxies(&other)).unwrap();
        assert!(a.view().original.is_none());
        assert_eq!(a.endpoint(), Some(Endpoint::Auth));
        let no_peer = Received {
            client_ip: None,
            ..auth
        };
        assert!(admit(no_peer, Trust::Proxies(&trusted))
            .unwrap()
            .view()
            .original
            .is_none());
        // Any other path, even from a trusted proxy, is its own request.
        for other_path in [&b"/app"[..], b"/oauth2/userinfo", b"/public/"] {
            let rx = received(Listener::Proxy, other_path, &h);
            let a = admit(rx, Trust::Proxies(&trusted)).unwrap();
            assert!(a.view().original.is_none(), "{other_path:?}");
        }
        // The ext_authz listeners report the original request themselves.
        for l in [Listener::ExtAuthzHttp, Listener::ExtAuthzGrpc] {
            let rx = received(l, b"/oauth2/auth", &h);
            assert!(admit(rx, Trust::Caller).unwrap().view().original.is_none());
        }
    }

    #[test]
    fn the_original_view_is_the_call_with_the_original_method_host_and_path() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-method", HeaderValue::from_static("PUT"));
        h.insert(
            "x-forwarded-uri",
            HeaderValue::from_static("/x/../oauth2/auth?q"),
        );
        h.insert("x-forwarded-host", HeaderValue::from_static("app.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let a = admit(
            received(Listener::Proxy, b"/oauth2/auth", &h),
            Trust::Proxies(&trusted),
        )
        .unwrap();
        let call = a.view();
        let o = call.original.unwrap().view(&call);
        assert_eq!(
            (o.method, o.host, o.uri, o.path, o.scheme),
            (
                "PUT",
                "app.example",
                "/x/../oauth2/auth?q",
                "/oauth2/auth",
                "https"
            )
        );
        // The original names none of authgate's endpoints: it is the app's.
        assert_eq!(o.endpoint, None);
        assert!(o.original.is_none());
        assert_eq!(o.client_ip, call.client_ip);
        assert_eq!(o.listener, Listener::Proxy);
    }

    #[test]
    fn the_call_takes_the_original_host_when_only_the_original_url_names_it() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let call_host = |headers: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.append(*k, HeaderValue::from_static(v));
            }
            let rx = Received {
                authority: "authgate.auth.svc:4180",
                ..received(Listener::Proxy, b"/oauth2/auth", &h)
            };
            admit(rx, Trust::Proxies(&trusted))
                .unwrap()
                .host()
                .to_owned()
        };
        assert_eq!(
            call_host(&[("x-original-url", "https://app.example/a")]),
            "app.example"
        );
        assert_eq!(
            call_host(&[
                ("x-original-url", "https://app.example/a"),
                ("x-forwarded-host", "app.example")
            ]),
            "app.example"
        );
        // Disagreeing: the call keeps its own (trusted) view.
        assert_eq!(
            call_host(&[
                ("x-original-url", "https://other.example/a"),
                ("x-forwarded-host", "app.example")
            ]),
            "app.example"
        );
        assert_eq!(
            call_host(&[
                ("x-original-url", "https://app.example/a"),
                ("x-original-uri", "/b")
            ]),
            "authgate.auth.svc:4180"
        );
        assert_eq!(call_host(&[]), "authgate.auth.svc:4180");
    }
}
