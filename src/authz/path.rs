//! The path that `skip_auth_routes`, `api_routes` and the `/oauth2/*`
//! endpoints are matched against.
//!
//! oauth2-proxy's advisories show the two ways a skip-auth regex gets
//! bypassed: matching the query or fragment (`/admin?x=/public/`), and a path
//! that looks public to the proxy but names a protected resource to the
//! upstream (`/public/../admin`, `/public/%2e%2e/admin`, `/public/..%2fadmin`,
//! `/public/..;/admin`). [`normalize`] removes the first and resolves the
//! second the way decoding servers (nginx, Envoy with path normalisation,
//! Tomcat) do. Because upstreams disagree about those constructs,
//! [`is_ambiguous`] reports them so the decision can refuse to *skip*
//! authentication for such a request: the failure mode is "log in", never
//! "served unauthenticated".
//!
//! Everything here is pure, never panics, never logs, and allocates only when
//! the path actually changes.

use std::borrow::Cow;

use regex::Regex;

use crate::config::Route;

/// The path of a request target, ready for route matching.
///
/// Called by the decision (all three front ends) with the request target as
/// received (origin-form `/p?q`, or absolute-form `http://h/p?q`).
///
/// - the query and fragment are cut at the first `?` or `#`, raw or
///   percent-encoded (`%3F`, `%3f`, `%23`): an upstream that decodes them
///   would serve the part before them;
/// - an absolute-form target loses its scheme and authority;
/// - `\`, `%2F` and `%5C` count as segment separators (nginx and Windows
///   servers treat them so) and come out as `/`;
/// - `.` and `..` segments are resolved, also when spelt with `%2e`/`%2E`
///   or followed by `;params` (Tomcat reads `..;` as `..`); `..` never climbs
///   above the root;
/// - runs of separators collapse to one `/` (nginx's `merge_slashes`, Envoy's
///   `merge_slashes`): otherwise `/public//../admin` would resolve to
///   `/public/admin` here but to `/admin` upstream. A trailing `/` is kept;
/// - the result always starts with `/`.
///
/// Nothing else is decoded: `/%70ublic` does not match `^/public`, which can
/// only make a skip route *not* apply (fail closed).
pub fn normalize(uri: &str) -> Cow<'_, str> {
    let path = cut_query(strip_origin(uri));
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    if is_canonical(path) {
        return Cow::Borrowed(path);
    }
    Cow::Owned(resolve(path))
}

/// True when servers disagree about what this request target names, so
/// `skip_auth_routes` must not be applied to it (authenticate instead).
///
/// The decision calls it before skipping authentication:
/// `!is_ambiguous(uri) && route_matches(routes, method, &normalize(uri))`.
/// Browsers never send these constructs, so legitimate traffic is unaffected:
/// dot segments (raw, `%2e`-encoded, or with `;params`), `\`, any `;`
/// (`/admin/secret;.js` is `/admin/secret` to Tomcat), encoded `/`, `\`,
/// `?`, `#`, `.`, `%` (double encoding) and encoded control characters.
pub fn is_ambiguous(uri: &str) -> bool {
    let path = strip_origin(uri);
    let b = path.as_bytes();
    let mut seg_start = 0;
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'?' | b'#' => return dot_kind(&path[seg_start..i]) != 0,
            b'\\' | b';' => return true,
            b'%' => {
                if let Some(d) = pct(b, i) {
                    if matches!(
                        d,
                        b'/' | b'\\' | b'?' | b'#' | b'.' | b'%' | 0x00..=0x1f | 0x7f
                    ) {
                        return true;
                    }
                }
            }
            b'/' => {
                if dot_kind(&path[seg_start..i]) != 0 {
                    return true;
                }
                seg_start = i + 1;
            }
            _ => {}
        }
    }
    dot_kind(&path[seg_start..]) != 0
}

/// True when a `skip_auth_routes` entry matches `method` and the
/// [`normalize`]d `path`. Methods compare case-insensitively; a route
/// without a method matches every method.
pub fn route_matches(routes: &[Route], method: &str, path: &str) -> bool {
    routes.iter().any(|route| {
        route
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && route.path.is_match(path)
    })
}

/// True when any of `regexes` (`api_routes`) matches the [`normalize`]d `path`.
pub fn any_matches(regexes: &[Regex], path: &str) -> bool {
    regexes.iter().any(|re| re.is_match(path))
}

// === request-target parsing ===

/// Drops `scheme://authority` from an absolute-form target; anything else is
/// returned unchanged.
fn strip_origin(uri: &str) -> &str {
    let b = uri.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() => {}
        _ => return uri,
    }
    let scheme_len = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')))
        .unwrap_or(b.len());
    let Some(rest) = uri[scheme_len..].strip_prefix("://") else {
        return uri;
    };
    match rest.find(['/', '\\', '?', '#']) {
        Some(end) => &rest[end..],
        None => "",
    }
}

/// The part before the first `?` or `#`, raw or percent-encoded.
fn cut_query(path: &str) -> &str {
    let b = path.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let cut = match c {
            b'?' | b'#' => true,
            b'%' => matches!(pct(b, i), Some(b'?' | b'#')),
            _ => false,
        };
        if cut {
            return &path[..i];
        }
    }
    path
}

/// The byte a `%XX` escape at `i` stands for, if `i` starts a valid one.
pub(super) fn pct(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let hi = hex(*b.get(i + 1)?)?;
    let lo = hex(*b.get(i + 2)?)?;
    Some((hi << 4) | lo)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Length of the segment separator starting at `i` (`/`, `\`, `%2F`, `%5C`),
/// or 0 when there is none.
fn separator_len(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(b'/' | b'\\') => 1,
        Some(b'%') if matches!(pct(b, i), Some(b'/' | b'\\')) => 3,
        _ => 0,
    }
}

/// 1 for a `.` segment, 2 for `..`, else 0. Dots may be `%2e`-encoded and the
/// segment may carry `;params`.
pub(super) fn dot_kind(segment: &str) -> usize {
    let core = segment.split(';').next().unwrap_or("").as_bytes();
    let mut dots = 0;
    let mut i = 0;
    while i < core.len() {
        if core[i] == b'.' {
            i += 1;
        } else if pct(core, i) == Some(b'.') {
            i += 3;
        } else {
            return 0;
        }
        dots += 1;
    }
    if dots <= 2 {
        dots
    } else {
        0
    }
}

// === normalisation ===

/// True when [`resolve`] would return `path` unchanged, so it can be borrowed.
fn is_canonical(path: &str) -> bool {
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut seg_start = 1;
    let mut i = 1;
    while i <= b.len() {
        let sep = if i == b.len() { 0 } else { separator_len(b, i) };
        if i < b.len() && sep == 0 {
            i += 1;
            continue;
        }
        if sep > 1 || (i < b.len() && b[i] != b'/') {
            return false; // `\`, `%2F` or `%5C` gets rewritten
        }
        let segment = &path[seg_start..i];
        let last = i == b.len();
        if (segment.is_empty() && !last) || dot_kind(segment) != 0 {
            return false;
        }
        i += sep.max(1);
        seg_start = i;
    }
    true
}

/// Splits on separators, resolves dot segments, collapses empty ones and
/// rebuilds the path with `/`.
fn resolve(path: &str) -> String {
    let b = path.as_bytes();
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash;
    let mut seg_start = 0;
    let mut i = 0;
    loop {
        let at_end = i == b.len();
        let sep = if at_end { 0 } else { separator_len(b, i) };
        if !at_end && sep == 0 {
            i += 1;
            continue;
        }
        let segment = &path[seg_start..i];
        match dot_kind(segment) {
            _ if segment.is_empty() => trailing_slash = at_end,
            1 => trailing_slash = true,
            2 => {
                kept.pop();
                trailing_slash = true;
            }
            _ => {
                kept.push(segment);
                trailing_slash = false;
            }
        }
        if at_end {
            break;
        }
        i += sep;
        seg_start = i;
    }
    let mut out = String::with_capacity(path.len() + 1);
    for segment in &kept {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Option<&str>, re: &str) -> Route {
        Route {
            method: method.map(str::to_owned),
            path: Regex::new(re).unwrap(),
        }
    }

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str)] = &[
            // unchanged
            ("/", "/"),
            ("/a", "/a"),
            ("/a/b/", "/a/b/"),
            ("/a.b/c..d/...", "/a.b/c..d/..."),
            ("/%70ublic", "/%70ublic"),
            ("/a%20b", "/a%20b"),
            // query and fragment, raw and encoded
            ("/public?x=/admin", "/public"),
            ("/public#/admin", "/public"),
            ("/admin%3F/public/", "/admin"),
            ("/admin%3f/public/", "/admin"),
            ("/admin%23/public/", "/admin"),
            ("/a/b%3Fc#d?e", "/a/b"),
            ("?x", "/"),
            ("", "/"),
            // absolute form
            ("http://host/path?q", "/path"),
            ("HTTPS://Host:8443/p/q#f", "/p/q"),
            ("http://host", "/"),
            ("http://host?x=/public/", "/"),
            ("http://host/public/../admin", "/admin"),
            // missing leading slash
            ("*", "/*"),
            ("admin", "/admin"),
            // dot segments
            ("/public/../admin", "/admin"),
            ("/public/./x", "/public/x"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/public/%2e./admin", "/admin"),
            ("/public/%2e/x", "/public/x"),
            ("/public/..;/admin", "/admin"),
            ("/public/..;jsessionid=1/admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/../../../etc/passwd", "/etc/passwd"),
            ("/a/../../b", "/b"),
            // alternative separators
            ("/public/..%2fadmin", "/admin"),
            ("/public/..%2Fadmin", "/admin"),
            ("/public/..\\admin", "/admin"),
            ("/public/..%5cadmin", "/admin"),
            ("/public%2Fx", "/public/x"),
            // empty segments collapse
            ("//admin", "/admin"),
            ("/public//../admin", "/admin"),
            ("/a///b//", "/a/b/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input), *want, "normalize({input:?})");
        }
    }

    #[test]
    fn normalize_borrows_when_nothing_changes() {
        for input in ["/", "/a/b", "/a/b/", "/x?q=1", "/x#f", "http://h/p"] {
            assert!(
                matches!(normalize(input), Cow::Borrowed(_)),
                "{input:?} should borrow"
            );
        }
        assert!(matches!(normalize("/a/../b"), Cow::Owned(_)));
    }

    #[test]
    fn normalize_is_idempotent() {
        for input in [
            "/public/..%2f..%2fadmin/",
            "/a/./b/../c//d",
            "x/%2e%2e/y",
            "/..;/..;/z",
        ] {
            let once = normalize(input).into_owned();
            assert_eq!(normalize(&once), once.as_str(), "{input:?}");
        }
    }

    #[test]
    fn truncated_percent_escapes_are_literal_and_do_not_panic() {
        assert_eq!(normalize("/a%"), "/a%");
        assert_eq!(normalize("/a%2"), "/a%2");
        assert_eq!(normalize("/a%zz/b"), "/a%zz/b");
        assert_eq!(normalize("/é/../ü"), "/ü");
    }

    #[test]
    fn public_prefix_route_cannot_reach_protected_paths() {
        let public = [route(None, "^/public/")];
        for attack in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2e/admin",
            "/public/..%2fadmin",
            "/public/..%5cadmin",
            "/public/..\\admin",
            "/public/..;/admin",
            "/public//../admin",
            "/public/./../admin",
            "/admin?/public/",
            "/admin#/public/",
            "/admin%3f/public/",
            "/admin%23/public/",
            "http://h/admin?/public/",
        ] {
            let path = normalize(attack);
            assert!(
                !route_matches(&public, "GET", &path),
                "{attack:?} normalised to {path:?} matched ^/public/"
            );
        }
        assert!(route_matches(
            &public,
            "GET",
            &normalize("/public/app.css?v=1")
        ));
    }

    #[test]
    fn ambiguous_targets_are_flagged() {
        for uri in [
            "/admin/../public/x",
            "/admin/./x",
            "/admin/%2e%2e/public/x",
            "/admin/..%2f..%2fpublic/x",
            "/admin/..%2F..%2Fpublic/x",
            "/admin\\..\\public",
            "/admin%5cx",
            "/admin/..;/public/x",
            "/admin/secret;.js",
            "/public%3f/../admin",
            "/public%23/../admin",
            "/public/%252e%252e/admin",
            "/public/%00/x",
            "/x/..",
            "/x/..?q",
            "http://h/a/../b",
        ] {
            assert!(is_ambiguous(uri), "{uri:?} should be ambiguous");
        }
    }

    #[test]
    fn ordinary_targets_are_not_ambiguous() {
        for uri in [
            "/",
            "/public/app.css",
            "/a.b/c..d/...?x=../y",
            "/search?q=a;b&r=%2F..%2F",
            "/p#../x",
            "/a%20b/%C3%A9",
            "//double/slash",
            "http://h/p?x=\\",
        ] {
            assert!(!is_ambiguous(uri), "{uri:?} should not be ambiguous");
        }
    }

    #[test]
    fn route_method_is_case_insensitive_and_optional() {
        let routes = [route(Some("GET"), "^/health$"), route(None, "^/static/")];
        assert!(route_matches(&routes, "GET", "/health"));
        assert!(route_matches(&routes, "get", "/health"));
        assert!(!route_matches(&routes, "POST", "/health"));
        assert!(route_matches(&routes, "POST", "/static/a.js"));
        assert!(route_matches(&routes, "DELETE", "/static/"));
        assert!(!route_matches(&routes, "GET", "/healthz"));
        assert!(!route_matches(&[], "GET", "/health"));
    }

    #[test]
    fn any_matches_checks_every_regex() {
        let res = [
            Regex::new("^/api/").unwrap(),
            Regex::new("\\.json$").unwrap(),
        ];
        assert!(any_matches(&res, "/api/v1"));
        assert!(any_matches(&res, "/data.json"));
        assert!(!any_matches(&res, "/app"));
        assert!(!any_matches(&[], "/api/v1"));
    }
}
