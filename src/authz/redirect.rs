//! Post-login and post-logout redirect targets (`rd`,
//! `X-Auth-Request-Redirect`, the original URL, sign-out's
//! `post_logout_redirect_uri`): used only when they cannot send the user
//! off-site, nor back into one of authgate's own `/oauth2/*` endpoints.
//!
//! oauth2-proxy's open-redirect advisories (`/\evil`, `/%09/evil`,
//! `https://example.com.evil`, userinfo tricks) are the test corpus below.
//! The approach is an allow-list: a target must be provably safe, else `/`.
//! Anything with whitespace, control characters (raw or `%`-encoded), a
//! backslash or a non-ASCII character is refused before parsing, because
//! browsers strip or reinterpret exactly those.
//!
//! A safe target whose path (normalised as every request path is, by
//! [`path::normalize`]) is an `/oauth2/*` endpoint also becomes `/`:
//! nginx's usual `X-Auth-Request-Redirect: $request_uri` on
//! `location /oauth2/` makes a plain sign-out link ask to come back to
//! `/oauth2/sign_out`, which IdPs refuse as `post_logout_redirect_uri` or
//! follow into a loop (oauth2-proxy users' `ERR_TOO_MANY_REDIRECTS`).
//!
//! API choice: free functions ([`validate`], [`is_safe`]) rather than a
//! `RedirectTarget` type; callers only ever need the final string.

use std::borrow::Cow;

use url::Url;

use super::path::{self, dot_kind, pct};
use super::Endpoint;

/// `target` when [`is_safe`] and not [`names_own_endpoint`], else `"/"`.
/// Borrows either way.
///
/// Called by every login (`/oauth2/start`, `/oauth2/sign_in`, the login
/// redirect of a protected page), `/oauth2/callback` and `/oauth2/sign_out`
/// (all front ends) before a `Location` or `post_logout_redirect_uri` is
/// written. `request_host` is the request's own `host[:port]`;
/// `allowed_domains` is `redirect.allowed_domains` (lower-cased by config
/// validation).
pub fn validate<'a>(
    target: &'a str,
    request_host: &str,
    allowed_domains: &[String],
) -> Cow<'a, str> {
    if is_safe(target, request_host, allowed_domains) && !names_own_endpoint(target) {
        Cow::Borrowed(target)
    } else {
        Cow::Borrowed("/")
    }
}

/// Whether `target` may be used as a redirect after login or logout:
/// - a path on this host: starts with exactly one `/` (not `//`, `/\`,
///   `/%2F`, `/%20`), and its path part has no empty, `.` or `..` segments
///   (oauth2-proxy refuses `/./` and `/../` as well);
/// - an absolute `http`/`https` URL without userinfo whose host:port is
///   `request_host` (case-insensitive; `https://h:443` equals `h`, and an
///   explicit request port must equal the URL's port or its scheme default);
/// - an absolute `http`/`https` URL whose host is in `allowed_domains`:
///   `.example.com` admits `example.com` itself and every subdomain (as
///   oauth2-proxy does), other entries match exactly; an entry's `:port`
///   must equal the URL's port, `:*` admits any port, and no port admits
///   only the scheme's default port.
pub fn is_safe(target: &str, request_host: &str, allowed_domains: &[String]) -> bool {
    if target.is_empty() || has_forbidden_bytes(target) {
        return false;
    }
    if target.starts_with('/') {
        return is_safe_local_path(target);
    }
    let Some(after_scheme) = strip_http_scheme(target) else {
        return false; // javascript:, data:, https:evil, relative paths, ...
    };
    // `https:///evil` is parsed by browsers as host `evil`.
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    // Userinfo (`@`), percent-encoded hosts and empty hosts are never needed.
    if authority.is_empty()
        || !authority.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        })
    {
        return false;
    }
    let Ok(url) = Url::parse(target) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return false;
    };
    same_host(&url, host, request_host)
        || allowed_domains
            .iter()
            .any(|entry| domain_allows(entry, &url, host))
}

/// Whether the path of `target` (a path, or an absolute URL on any host),
/// [normalised](path::normalize) as the request edge normalises every
/// request path (query and fragment cut, raw or `%3F`/`%23`; dot segments
/// resolved; separators merged), is one of authgate's own `/oauth2/*`
/// endpoints ([`Endpoint::oauth2`]). A browser sent there after login or
/// logout would start another flow, replay a spent callback or sign out
/// again: such a target must become `/`.
pub fn names_own_endpoint(target: &str) -> bool {
    Endpoint::oauth2(&path::normalize(target)).is_some()
}

// === checks ===

/// Raw whitespace, control, non-ASCII or `\` anywhere, or a `%`-encoded
/// control character or `\`: browsers strip or rewrite these, which is how
/// `/\tevil` becomes `//evil`.
fn has_forbidden_bytes(target: &str) -> bool {
    let b = target.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        !c.is_ascii_graphic()
            || c == b'\\'
            || matches!(pct(b, i), Some(d) if d < 0x20 || d == 0x7f || d == b'\\')
    })
}

/// A target starting with `/`, already free of forbidden bytes.
fn is_safe_local_path(target: &str) -> bool {
    let b = target.as_bytes();
    // The second character decides whether a browser sees a host: `//evil`,
    // and servers that decode once more turn `/%2F/evil` and `/%20/evil` into it.
    match b.get(1) {
        Some(b'/') => return false,
        Some(b'%') if matches!(pct(b, 1), Some(b'/' | b' ')) => return false,
        _ => {}
    }
    let path_end = target.find(['?', '#']).unwrap_or(target.len());
    let path = &target[..path_end];
    let segments = path.split('/').count();
    path.split('/')
        .enumerate()
        .skip(1)
        .all(|(i, segment)| (i + 1 == segments || !segment.is_empty()) && dot_kind(segment) == 0)
}

/// The rest after `http://` or `https://` (scheme case-insensitive).
fn strip_http_scheme(target: &str) -> Option<&str> {
    for prefix in ["http://", "https://"] {
        if let Some(head) = target.get(..prefix.len()) {
            if head.eq_ignore_ascii_case(prefix) {
                return target.get(prefix.len()..);
            }
        }
    }
    None
}

/// The URL names the request's own host:port.
fn same_host(url: &Url, host: &str, request_host: &str) -> bool {
    let (req_host, req_port) = split_host_port(request_host);
    if req_host.is_empty() || !req_host.eq_ignore_ascii_case(host) {
        return false;
    }
    match req_port {
        None => url.port().is_none(),
        Some(port) => port.parse::<u16>().ok() == url.port_or_known_default(),
    }
}

/// One `redirect.allowed_domains` entry admits the URL's host and port.
fn domain_allows(entry: &str, url: &Url, host: &str) -> bool {
    let (entry_host, entry_port) = split_host_port(entry);
    let host_matches = match entry_host.strip_prefix('.') {
        Some("") => false,
        Some(apex) => host.eq_ignore_ascii_case(apex) || ends_with_ignore_case(host, entry_host),
        None => !entry_host.is_empty() && host.eq_ignore_ascii_case(entry_host),
    };
    host_matches
        && match entry_port {
            None => url.port().is_none(),
            Some("*") => true,
            Some(port) => port.parse::<u16>().ok() == url.port_or_known_default(),
        }
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `host[:port]` with `[v6]` brackets kept on the host; the port is
/// digits or `*`, otherwise the whole string is the host.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some((host, port)) = s.rsplit_once(':') {
        let port_like =
            port == "*" || (!port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()));
        let host_closed = !host.starts_with('[') || host.ends_with(']');
        if port_like && host_closed {
            return (host, Some(port));
        }
    }
    (s, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "example.com";

    fn allowed() -> Vec<String> {
        [
            ".trusted.com",
            "exact.org",
            "ported.net:8443",
            "anyport.io:*",
            "[::1]:9000",
        ]
        .into_iter()
        .map(String::from)
        .collect()
    }

    /// Open-redirect payloads (oauth2-proxy advisories, PortSwigger and
    /// PayloadsAllTheThings-style lists): every one must become `/`.
    const BAD: &[&str] = &[
        "",
        " ",
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "//evil.com/%2F..",
        "/\\evil.com",
        "\\/evil.com",
        "\\\\evil.com",
        "/\\/evil.com",
        "\\evil.com",
        "/.//evil.com",
        "/..//evil.com",
        "/./evil.com",
        "/a/../b",
        "/a//b",
        "/%09/evil.com",
        "/%0a/evil.com",
        "/%0d/evil.com",
        "/%0D%0A/evil.com",
        "/%5c/evil.com",
        "/%5Cevil.com",
        "/%2f/evil.com",
        "/%2F%2Fevil.com",
        "/%20/evil.com",
        "/%00/evil.com",
        "/%7f/evil.com",
        "/\t/evil.com",
        "/\n/evil.com",
        "/\r\n/evil.com",
        "/foo%0d%0aSet-Cookie:%20x=y",
        "/foo\r\nLocation: https://evil.com",
        "/foo bar",
        " /foo",
        "\t//evil.com",
        " https://example.com/",
        "https://example.com/ ",
        "／／evil.com",
        "/／evil.com",
        "/\u{2215}evil.com",
        "https://evil。com",
        "https://ｅxample.com/",
        "https://evil.com",
        "http://evil.com",
        "HTTPS://EVIL.COM",
        "https://example.com.evil.com",
        "https://evilexample.com",
        "https://example.com@evil.com",
        "https://example.com:443@evil.com",
        "https://user:pass@example.com/",
        "https://@evil.com",
        "https://@example.com",
        "https://evil.com#@example.com",
        "https://evil.com?@example.com",
        "https://evil.com\\@example.com",
        "https://example.com\\.evil.com",
        "https://example.com%2eevil.com",
        "https://example.com%40evil.com",
        "https://evil.com%23.example.com",
        "https://example.com%09.evil.com",
        "https:evil.com",
        "https:/evil.com",
        "http:/\\evil.com",
        "http:\\\\evil.com",
        "https:///evil.com",
        "https:",
        "https://",
        "https:///",
        "javascript:alert(1)",
        "JavaScript://example.com/%0aalert(1)",
        "jav\tascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "ftp://example.com/",
        "file:///etc/passwd",
        "ws://example.com/",
        "evil.com",
        "example.com/path",
        "?next=/",
        "#/x",
        "%2f%2fevil.com",
        "/%2f%2fevil.com",
        "https://example.com:8443/",
        "https://example.com:0/",
        "http://example.com:443/",
        "https://sub.example.com/",
        "https://0x7f000001/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "https://trusted.com.evil.com/",
        "https://eviltrusted.com/",
        "https://trusted.com@evil.com/",
        "https://exact.org.evil/",
        "https://sub.exact.org/",
        "https://ported.net/",
        "https://ported.net:9443/",
        "http://[::1]:9001/",
        "http://evil.com/https://example.com",
        "https://example.com/%0d%0aSet-Cookie:x",
        "https://example.com/\u{7f}",
        "/foo\u{2028}",
    ];

    const GOOD: &[&str] = &[
        "/",
        "/foo",
        "/foo/bar?x=1#frag",
        "/a/b/",
        "/search?q=a%20b&next=https://evil.com",
        "/app#/route//x",
        "/%E2%9C%93",
        "/a%2Fb",
        "/a.b/..c/...",
        "https://example.com",
        "https://example.com/",
        "https://EXAMPLE.com/x",
        "HTTPS://example.com/x",
        "http://example.com/x?y=1",
        "https://example.com:443/x",
        "https://example.com/a//b",
        "https://trusted.com/",
        "https://a.trusted.com/x",
        "https://a.b.trusted.com:443/",
        "http://A.Trusted.Com/",
        "https://exact.org/path",
        "https://ported.net:8443/",
        "https://anyport.io:1234/x",
        "https://anyport.io/",
        "http://[::1]:9000/",
    ];

    #[test]
    fn corpus_is_large_enough() {
        assert!(BAD.len() >= 60, "only {} bad payloads", BAD.len());
    }

    #[test]
    fn open_redirect_payloads_become_root() {
        let domains = allowed();
        for target in BAD {
            assert_eq!(
                validate(target, HOST, &domains),
                "/",
                "{target:?} must be refused"
            );
        }
    }

    #[test]
    fn safe_targets_are_kept_verbatim() {
        let domains = allowed();
        for target in GOOD {
            let out = validate(target, HOST, &domains);
            assert_eq!(out, *target, "{target:?} must be kept");
            assert!(matches!(out, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn own_host_with_port_must_match_port() {
        assert!(is_safe(
            "https://example.com:8443/x",
            "example.com:8443",
            &[]
        ));
        assert!(is_safe(
            "https://example.com:8443/x",
            "EXAMPLE.COM:8443",
            &[]
        ));
        assert!(!is_safe("https://example.com/x", "example.com:8443", &[]));
        assert!(is_safe("https://example.com/x", "example.com:443", &[]));
        assert!(!is_safe("http://example.com/x", "example.com:443", &[]));
        assert!(is_safe("http://localhost:4180/p", "LOCALHOST:4180", &[]));
        assert!(is_safe("http://[::1]:4180/", "[::1]:4180", &[]));
        assert!(!is_safe("http://[::1]:4181/", "[::1]:4180", &[]));
    }

    #[test]
    fn empty_request_host_matches_nothing() {
        assert!(!is_safe("https://example.com/", "", &[]));
        assert!(is_safe("/ok", "", &[]));
    }

    #[test]
    fn apex_only_entry_does_not_admit_subdomains() {
        let domains = vec!["exact.org".to_owned()];
        assert!(is_safe("https://exact.org/", "x", &domains));
        assert!(!is_safe("https://a.exact.org/", "x", &domains));
    }

    #[test]
    fn bare_dot_or_empty_entries_admit_nothing() {
        let domains = vec![".".to_owned(), String::new(), ":*".to_owned()];
        assert!(!is_safe("https://evil.com/", "x", &domains));
    }

    #[test]
    fn split_host_port_handles_v6_and_wildcards() {
        assert_eq!(split_host_port("a.com"), ("a.com", None));
        assert_eq!(split_host_port("a.com:80"), ("a.com", Some("80")));
        assert_eq!(split_host_port("a.com:*"), ("a.com", Some("*")));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some("80")));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("a.com:x"), ("a.com:x", None));
    }

    /// Targets that name an `/oauth2/*` endpoint once normalised, relative
    /// or absolute (own host or an allowed domain): each becomes `/`.
    const OWN_ENDPOINTS: &[&str] = &[
        "/oauth2/sign_out",
        "/oauth2/sign_out?rd=/x",
        "/oauth2/sign_out#top",
        "/oauth2/sign_out%3Frd=/x",
        "/oauth2/sign_out%23x",
        "/oauth2/start",
        "/oauth2/start?rd=%2Fapp",
        "/oauth2/sign_in?rd=/app",
        "/oauth2/callback?code=c&state=s",
        "/oauth2/auth",
        "/oauth2/userinfo",
        "/oauth2/backchannel_logout",
        "http://example.com/oauth2/sign_out",
        "HTTPS://EXAMPLE.COM/oauth2/start?rd=/",
        "https://example.com:443/oauth2/callback",
        "https://a.trusted.com/oauth2/sign_out",
        "https://exact.org/oauth2/sign_in?rd=https://exact.org/",
        "https://anyport.io:1234/oauth2/start",
    ];

    #[test]
    fn targets_naming_authgates_own_endpoints_become_root() {
        let domains = allowed();
        for target in OWN_ENDPOINTS {
            assert!(names_own_endpoint(target), "{target:?}");
            assert_eq!(validate(target, HOST, &domains), "/", "{target:?}");
        }
    }

    #[test]
    fn the_apps_paths_near_authgates_own_are_kept() {
        let domains = allowed();
        for target in [
            "/oauth2",
            "/oauth2/",
            "/oauth2/start/",
            "/oauth2/startx",
            "/oauth2/%73ign_out",
            "/OAUTH2/SIGN_OUT",
            "/app/oauth2/sign_out",
            "/ping",
            "/ready",
            "/search?next=/oauth2/sign_out",
            "https://example.com/app?rd=/oauth2/start",
        ] {
            assert!(!names_own_endpoint(target), "{target:?}");
            assert_eq!(validate(target, HOST, &domains), *target, "{target:?}");
        }
    }
}
