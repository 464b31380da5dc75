//! The original request a forward-auth caller (nginx / ingress-nginx
//! `auth_request`, Traefik `forwardAuth`, Caddy `forward_auth`) reports to
//! `/oauth2/auth` in its headers, read once by the request edge for a
//! trusted caller (the contract's "Forward-auth callers").
//!
//! Pure: never blocks, never panics, never logs.

use std::borrow::Cow;

use http::HeaderMap;

use super::request::forwarded;
use super::{path, RequestView};

/// The original request behind a forward-auth call, as a trusted caller
/// reported it in its headers (see [`Admitted::view`](super::Admitted::view)'s
/// [`RequestView::original`]).
///
/// Which headers report which part (the contract's "Forward-auth callers"):
/// the method from `X-Forwarded-Method` (Traefik, Caddy) or
/// `X-Original-Method` (nginx configurations, ingress-nginx); the path and
/// query from `X-Forwarded-Uri` (Traefik, Caddy), `X-Original-URI` (nginx
/// configurations) or the path of `X-Original-URL` (ingress-nginx's
/// default, a full URL); the host from `X-Forwarded-Host` or
/// `X-Original-URL`'s host.
#[derive(Debug, Clone, Copy)]
pub struct Original<'a> {
    /// The original method; empty when the caller did not report one.
    /// Then no `METHOD=` route and no preflight can match: an nginx
    /// subrequest is a `GET` whatever the original was, so guessing would
    /// let a `POST` ride a `GET=` skip route.
    pub method: &'a str,
    /// `host[:port]` of the original request: `X-Forwarded-Host`, else
    /// `X-Original-URL`'s host, else the host the call itself was for.
    pub host: &'a str,
    /// Path and query as the caller reported them (origin-form, not
    /// normalised).
    pub uri: &'a str,
    /// The [normalised](path::normalize) path routes are matched on.
    pub path: &'a str,
    /// Several headers report a part and disagree, or one of them is
    /// malformed: nothing is skipped for such a request (it is decided as
    /// protected). The fields above then hold the first well-formed
    /// reading, in the order the headers are listed above.
    pub conflicting: bool,
}

impl<'a> Original<'a> {
    /// The view of the original request, for rules that read a
    /// [`RequestView`]: `call`'s listener, scheme, headers and client with
    /// this request's method, host, target and path. It names none of
    /// authgate's endpoints and has no original of its own.
    pub fn view(&self, call: &RequestView<'a>) -> RequestView<'a> {
        RequestView {
            method: self.method,
            host: self.host,
            uri: self.uri,
            path: self.path,
            endpoint: None,
            original: None,
            ..*call
        }
    }
}

/// [`Original`] as the request edge keeps it: the normalised path owned
/// when normalising changed it.
#[derive(Debug)]
pub(super) struct Reported<'a> {
    method: &'a str,
    pub(super) host: &'a str,
    uri: &'a str,
    path: Cow<'a, str>,
    pub(super) conflicting: bool,
}

impl Reported<'_> {
    /// The borrowed [`Original`] a [`RequestView`] carries.
    pub(super) fn view(&self) -> Original<'_> {
        Original {
            method: self.method,
            host: self.host,
            uri: self.uri,
            path: &self.path,
            conflicting: self.conflicting,
        }
    }
}

/// One part of the original request as every header reporting it says:
/// the first well-formed value, and whether any value is malformed or
/// differs from it.
struct Reading<'a> {
    first: Option<&'a str>,
    conflicting: bool,
}

impl<'a> Reading<'a> {
    const NONE: Reading<'a> = Reading {
        first: None,
        conflicting: false,
    };

    /// Adds one reported value: `None` when it was malformed.
    fn add(&mut self, value: Option<&'a str>, same: fn(&str, &str) -> bool) {
        match (value, self.first) {
            (None, _) => self.conflicting = true,
            (Some(v), None) => self.first = Some(v),
            (Some(v), Some(first)) => self.conflicting |= !same(first, v),
        }
    }
}

/// Every non-empty line of header `name`, trimmed; a line that is not
/// visible ASCII yields `None` (malformed).
fn lines<'h>(headers: &'h HeaderMap, name: &str) -> impl Iterator<Item = Option<&'h str>> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok().map(str::trim))
        .filter(|v| v != &Some(""))
}

/// An HTTP method token (RFC 9110 §9.1: a `token`), else `None`.
fn method_token(v: &str) -> Option<&str> {
    let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    v.bytes().all(tchar).then_some(v)
}

/// An origin-form target (`/path?query`), else `None`.
fn origin_form(v: &str) -> Option<&str> {
    v.starts_with('/').then_some(v)
}

/// `(host, origin-form target)` of an absolute `http(s)://` URL, else
/// `None`. An authority with userinfo (`a@b`) is refused: which host it
/// names is exactly what parsers disagree on.
fn split_url(v: &str) -> Option<(&str, &str)> {
    let rest = ["http://", "https://"].iter().find_map(|p| {
        v.get(..p.len())
            .filter(|s| s.eq_ignore_ascii_case(p))
            .map(|_| &v[p.len()..])
    })?;
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    let (host, target) = rest.split_at(end);
    if host.is_empty() || host.contains('@') {
        return None;
    }
    match target {
        "" => Some((host, "/")),
        t => origin_form(t).map(|t| (host, t)),
    }
}

/// The original request a forward-auth caller reports in its headers
/// ([`Original`]); `None` when no header reports its path (the call is
/// then decided as itself, like from an untrusted caller). Called by the
/// request edge only, for `/oauth2/auth` from a trusted proxy.
pub(super) fn reported<'a>(headers: &'a HeaderMap, call_host: &'a str) -> Option<Reported<'a>> {
    let same_case = |a: &str, b: &str| a == b;
    let same_ignoring_case = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let mut method = Reading::NONE;
    for name in ["x-forwarded-method", "x-original-method"] {
        for v in lines(headers, name) {
            method.add(v.and_then(method_token), same_ignoring_case);
        }
    }
    let mut uri = Reading::NONE;
    for name in ["x-forwarded-uri", "x-original-uri"] {
        for v in lines(headers, name) {
            uri.add(v.and_then(origin_form), same_case);
        }
    }
    let mut host = Reading::NONE;
    if let Some(h) = forwarded(headers, "x-forwarded-host") {
        host.add(Some(h), same_ignoring_case);
    }
    for v in lines(headers, "x-original-url") {
        let url = v.and_then(split_url);
        uri.add(url.map(|(_, t)| t), same_case);
        host.add(url.map(|(h, _)| h), same_ignoring_case);
    }
    let target = uri.first?;
    Some(Reported {
        method: method.first.unwrap_or(""),
        host: host.first.unwrap_or(call_host),
        uri: target,
        path: path::normalize(target),
        conflicting: method.conflicting || uri.conflicting || host.conflicting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The original request `headers` report, if any (the call was for
    /// `app.example.test`).
    fn reported(headers: &[(&str, &[u8])]) -> Option<(String, String, String, String, bool)> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        super::reported(&h, "app.example.test").map(|o| {
            (
                o.method.to_owned(),
                o.host.to_owned(),
                o.uri.to_owned(),
                o.path.into_owned(),
                o.conflicting,
            )
        })
    }

    fn agreed(
        method: &str,
        host: &str,
        uri: &str,
        path: &str,
    ) -> Option<(String, String, String, String, bool)> {
        Some((method.into(), host.into(), uri.into(), path.into(), false))
    }

    #[test]
    fn each_forward_auth_caller_reports_the_original_request_its_own_way() {
        // Traefik forwardAuth and Caddy forward_auth.
        assert_eq!(
            reported(&[
                ("x-forwarded-method", b"OPTIONS"),
                ("x-forwarded-uri", b"/api/v1/x?y=1,2"),
                ("x-forwarded-host", b"app.example"),
            ]),
            agreed("OPTIONS", "app.example", "/api/v1/x?y=1,2", "/api/v1/x")
        );
        // nginx configurations.
        assert_eq!(
            reported(&[
                ("x-original-method", b"POST"),
                ("x-original-uri", b"/public/a"),
            ]),
            agreed("POST", "app.example.test", "/public/a", "/public/a")
        );
        // ingress-nginx: a full URL; its host counts.
        assert_eq!(
            reported(&[
                ("x-original-url", b"https://App.Example:8443/public/a?b"),
                ("x-original-method", b"GET"),
            ]),
            agreed("GET", "App.Example:8443", "/public/a?b", "/public/a")
        );
        assert_eq!(
            reported(&[("X-Original-URL", b"HTTP://app.example")]),
            agreed("", "app.example", "/", "/")
        );
        // The same path and normalisation as every request: ambiguity is
        // judged by the decision on the target as reported.
        assert_eq!(
            reported(&[("x-forwarded-uri", b"/public/..;/admin")]),
            agreed("", "app.example.test", "/public/..;/admin", "/admin")
        );
    }

    #[test]
    fn headers_that_agree_are_one_reading_whatever_the_case_of_method_and_host() {
        assert_eq!(
            reported(&[
                ("x-forwarded-method", b"get"),
                ("x-original-method", b"GET"),
                ("x-forwarded-uri", b"/a?b"),
                ("x-original-uri", b"/a?b"),
                ("x-original-url", b"http://APP.example/a?b"),
                ("x-forwarded-host", b"app.example, inner.example"),
            ]),
            agreed("get", "app.example", "/a?b", "/a")
        );
    }

    #[test]
    fn headers_that_disagree_or_are_malformed_mark_the_original_conflicting() {
        let conflicting: &[&[(&str, &[u8])]] = &[
            // Two headers, two paths (a client's own X-Original-URI through
            // an nginx that sets X-Forwarded-Uri).
            &[
                ("x-forwarded-uri", b"/admin"),
                ("x-original-uri", b"/public/"),
            ],
            // One header twice.
            &[
                ("x-forwarded-uri", b"/admin"),
                ("x-forwarded-uri", b"/public/"),
            ],
            // The URL's path differs, or its host does.
            &[
                ("x-forwarded-uri", b"/admin"),
                ("x-original-url", b"http://h/public/"),
            ],
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-forwarded-host", b"a.example"),
                ("x-original-url", b"http://b.example/a"),
            ],
            // Methods.
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-forwarded-method", b"GET"),
                ("x-original-method", b"OPTIONS"),
            ],
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-forwarded-method", b"GET, OPTIONS"),
            ],
            // Malformed values: not origin-form, not a URL, userinfo,
            // not visible ASCII.
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-original-uri", b"a:/public/"),
            ],
            &[("x-forwarded-uri", b"/a"), ("x-original-url", b"/a")],
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-original-url", b"http://public@h/a"),
            ],
            &[
                ("x-forwarded-uri", b"/a"),
                ("x-original-url", b"http://h?a"),
            ],
            &[("x-forwarded-uri", b"/a"), ("x-original-uri", b"/a\xff")],
        ];
        for headers in conflicting {
            let r = reported(headers).unwrap_or_else(|| panic!("none for {headers:?}"));
            assert!(r.4, "{headers:?} agreed: {r:?}");
        }
        // The first well-formed reading is kept (for rules that need one).
        let r = reported(&[("x-forwarded-uri", b"*"), ("x-original-uri", b"/b")]).unwrap();
        assert_eq!((r.2.as_str(), r.4), ("/b", true));
    }

    #[test]
    fn without_a_reported_path_there_is_no_original_request() {
        assert_eq!(reported(&[]), None);
        assert_eq!(reported(&[("x-forwarded-method", b"OPTIONS")]), None);
        assert_eq!(reported(&[("x-forwarded-uri", b"")]), None);
        // Every path header malformed: decided as the call itself.
        assert_eq!(reported(&[("x-forwarded-uri", b"public")]), None);
    }
}
