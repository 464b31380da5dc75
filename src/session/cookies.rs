//! Cookies on both sides of a request: reading the `Cookie` header(s) into a
//! [`CookieJar`], removing authgate's own cookies before proxying, and
//! rendering `Set-Cookie` values with the configured attributes.
//!
//! Parsing is lenient and allocation-light: the jar holds slices of the
//! header values. Besides `;`, a `,` separates pairs when it is followed by
//! `name=`, because Envoy's gRPC ext_authz joins repeated `cookie` lines
//! with `,` (the contract's "a `cookie` joined from several lines with `,`").
//! Cookie values never contain `,` per RFC 6265, and ours are base64url.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::SameSite;

// === impl CookieJar ===

/// The request's cookies as `(name, value)` slices, in header order.
#[derive(Debug, Clone, Default)]
pub struct CookieJar<'a> {
    pairs: Vec<(&'a str, &'a str)>,
}

impl<'a> CookieJar<'a> {
    /// Reads every `cookie` header line. Lines or pairs that are not UTF-8 are
    /// skipped, not fatal: one bad third-party cookie must not hide ours.
    pub fn from_headers(headers: &'a http::HeaderMap) -> CookieJar<'a> {
        let mut jar = CookieJar::default();
        for line in headers.get_all(http::header::COOKIE) {
            jar.push_line(line.as_bytes());
        }
        jar
    }

    /// Same as [`CookieJar::from_headers`] for callers holding plain strings
    /// (the gRPC `CheckRequest` header map).
    pub fn from_lines<I>(lines: I) -> CookieJar<'a>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut jar = CookieJar::default();
        for line in lines {
            jar.push_line(line.as_bytes());
        }
        jar
    }

    fn push_line(&mut self, line: &'a [u8]) {
        for segment in PairSplitter::new(line) {
            if let Some(pair) = parse_pair(segment) {
                self.pairs.push(pair);
            }
        }
    }

    /// The value of the first cookie called `name` (trimmed, surrounding
    /// double quotes removed).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| *value)
    }

    /// All `(name, value)` pairs in header order, duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.pairs.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Splits one header line into trimmed, non-empty `name=value` segments.
struct PairSplitter<'a> {
    rest: &'a [u8],
}

impl<'a> PairSplitter<'a> {
    fn new(line: &'a [u8]) -> Self {
        PairSplitter { rest: line }
    }
}

impl<'a> Iterator for PairSplitter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let line = self.rest;
            let (end, next) = match split_point(line) {
                Some(i) => (i, i + 1),
                None => (line.len(), line.len()),
            };
            self.rest = &line[next..];
            let segment = trim(&line[..end]);
            if !segment.is_empty() {
                return Some(segment);
            }
        }
        None
    }
}

/// Where the segment at the start of `line` ends: the first `;`, or the
/// first `,` that is followed by `name=`.
fn split_point(line: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_separator(&line[from..]).map(|i| from + i) {
        if line[i] == b';' || starts_with_pair(&line[i + 1..]) {
            return Some(i);
        }
        from = i + 1;
    }
    None
}

/// Index of the first `;` or `,`. Runs on every request over cookie values
/// of several KB (a sealed session), so it tests eight bytes at a time
/// (SWAR) and only scans byte by byte within the word that has a hit.
fn find_separator(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `v` is zero.
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut start = 0;
    for chunk in s.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if has_zero(w ^ (ONES * u64::from(b';'))) | has_zero(w ^ (ONES * u64::from(b','))) != 0 {
            break;
        }
        start += 8;
    }
    s[start..]
        .iter()
        .position(|&b| b == b';' || b == b',')
        .map(|i| start + i)
}

/// Whether `s` begins (after blanks) with `token=`: only then is a preceding
/// `,` a pair separator rather than part of a value.
fn starts_with_pair(s: &[u8]) -> bool {
    let s = trim_start(s);
    let name_len = s.iter().take_while(|&&b| is_token(b)).count();
    name_len > 0 && s.get(name_len) == Some(&b'=')
}

/// RFC 7230 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    start.map_or(&[], |i| &s[i..])
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    end.map_or(&[], |i| &s[..=i])
}

fn parse_pair(segment: &[u8]) -> Option<(&str, &str)> {
    let eq = segment.iter().position(|&b| b == b'=')?;
    let name = trim(&segment[..eq]);
    if name.is_empty() {
        return None;
    }
    let mut value = trim(&segment[eq + 1..]);
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    Some((
        std::str::from_utf8(name).ok()?,
        std::str::from_utf8(value).ok()?,
    ))
}

/// The name a segment carries, for segments that have one.
fn segment_name(segment: &[u8]) -> Option<&[u8]> {
    let eq = segment.iter().position(|&b| b == b'=')?;
    Some(trim(&segment[..eq]))
}

// === own cookies ===

/// Whether `cookie_name` belongs to authgate when the session cookie is
/// `name`: `NAME`, `NAME_<digits>` (chunks), `NAME_csrf`, `NAME_csrf_<any>`.
/// `NAME_other` and `NAMEx` are the application's.
pub fn is_own_cookie(cookie_name: &str, name: &str) -> bool {
    is_own_cookie_bytes(cookie_name.as_bytes(), name.as_bytes())
}

fn is_own_cookie_bytes(cookie_name: &[u8], name: &[u8]) -> bool {
    let Some(rest) = cookie_name.strip_prefix(name) else {
        return false;
    };
    let Some(suffix) = rest.strip_prefix(b"_") else {
        return rest.is_empty();
    };
    (!suffix.is_empty() && suffix.iter().all(u8::is_ascii_digit))
        || suffix == b"csrf"
        || suffix.starts_with(b"csrf_")
}

/// Removes authgate's own cookies from a `Cookie` header value before it goes
/// upstream, so the upstream never sees session or CSRF material.
///
/// - `Some(Cow::Borrowed(input))`: none of ours was present; send it as is.
/// - `Some(Cow::Owned(rest))`: ours were removed; the others, joined by `; `.
/// - `None`: nothing remains; drop the header.
pub fn strip_own_cookies<'h>(cookie_header: &'h str, name: &str) -> Option<Cow<'h, str>> {
    match strip_own_cookies_bytes(cookie_header.as_bytes(), name)? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(cookie_header)),
        // Segments are cut at ASCII bytes of a `str`, so they are UTF-8.
        Cow::Owned(kept) => String::from_utf8(kept).ok().map(Cow::Owned),
    }
}

/// [`strip_own_cookies`] on raw header bytes: a line with non-ASCII bytes in
/// some app cookie still loses only authgate's cookies.
pub fn strip_own_cookies_bytes<'h>(line: &'h [u8], name: &str) -> Option<Cow<'h, [u8]>> {
    let is_ours = |segment: &[u8]| {
        segment_name(segment).is_some_and(|n| is_own_cookie_bytes(n, name.as_bytes()))
    };
    if !PairSplitter::new(line).any(is_ours) {
        return Some(Cow::Borrowed(line));
    }
    let mut kept = Vec::with_capacity(line.len());
    for segment in PairSplitter::new(line).filter(|s| !is_ours(s)) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(segment);
    }
    (!kept.is_empty()).then_some(Cow::Owned(kept))
}

// === impl CookieAttrs ===

/// The attributes of every cookie authgate sets for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    pub path: String,
    /// None: a host-only cookie (no `Domain` attribute).
    pub domain: Option<String>,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    /// None: a browser-session cookie (`cookie.expire: 0s`, as oauth2-proxy).
    pub max_age: Option<Duration>,
}

impl CookieAttrs {
    /// Picks the `Domain` like oauth2-proxy: the longest `cookie.domains`
    /// entry that the request host (port stripped) equals or is a subdomain
    /// of; a leading `.` is ignored. No match: host-only.
    pub fn for_request(cfg: &crate::config::Cookie, request_host: &str) -> CookieAttrs {
        let host = host_without_port(request_host);
        let domain = cfg
            .domains
            .iter()
            .map(|d| d.trim_start_matches('.'))
            .filter(|d| domain_matches(host, d))
            .max_by_key(|d| d.len())
            .map(str::to_owned);
        CookieAttrs {
            path: cfg.path.clone(),
            domain,
            secure: cfg.secure,
            http_only: cfg.http_only,
            same_site: cfg.same_site,
            max_age: (!cfg.expire.is_zero()).then_some(cfg.expire),
        }
    }
}

fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep the brackets, drop what follows.
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `host` is `domain` or a subdomain of it (label boundary, ASCII case-insensitive).
/// A bare suffix (`evilexample.com` for `example.com`) does not match.
fn domain_matches(host: &str, domain: &str) -> bool {
    let (h, d) = (host.as_bytes(), domain.as_bytes());
    if d.is_empty() || h.len() < d.len() {
        return false;
    }
    let split = h.len() - d.len();
    h[split..].eq_ignore_ascii_case(d) && (split == 0 || h[split - 1] == b'.')
}

// === Set-Cookie rendering ===

/// A whole `Set-Cookie` value. `name` and `value` must be cookie-safe (config
/// names, base64url values): they are written as given.
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs) -> String {
    let suffix = attribute_suffix(attrs, SystemTime::now());
    let mut line = String::with_capacity(name.len() + 1 + value.len() + suffix.len());
    line.push_str(name);
    line.push('=');
    line.push_str(value);
    line.push_str(&suffix);
    line
}

/// A `Set-Cookie` value that deletes `name` (same path and domain, so the
/// browser matches the cookie it holds).
pub fn clear_cookie(name: &str, attrs: &CookieAttrs) -> String {
    let mut line = String::with_capacity(name.len() + 128);
    line.push_str(name);
    line.push('=');
    push_path_domain(&mut line, attrs);
    line.push_str("; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT");
    push_flags(&mut line, attrs);
    line
}

/// Everything after `name=value`, starting with `; `. Its length does not
/// depend on `now` (the date is fixed-width), which chunking relies on.
pub(crate) fn attribute_suffix(attrs: &CookieAttrs, now: SystemTime) -> String {
    let mut out = String::with_capacity(128);
    push_path_domain(&mut out, attrs);
    if let Some(max_age) = attrs.max_age {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let expires = now.as_secs().saturating_add(max_age.as_secs());
        let _ = write!(out, "; Max-Age={}; Expires=", max_age.as_secs());
        push_http_date(&mut out, expires);
    }
    push_flags(&mut out, attrs);
    out
}

fn push_path_domain(out: &mut String, attrs: &CookieAttrs) {
    out.push_str("; Path=");
    out.push_str(&attrs.path);
    if let Some(domain) = &attrs.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
}

fn push_flags(out: &mut String, attrs: &CookieAttrs) {
    if attrs.http_only {
        out.push_str("; HttpOnly");
    }
    if attrs.secure {
        out.push_str("; Secure");
    }
    out.push_str(match attrs.same_site {
        SameSite::Lax => "; SameSite=Lax",
        SameSite::Strict => "; SameSite=Strict",
        SameSite::None => "; SameSite=None",
    });
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), always 29 bytes: years
/// past 9999 are clamped.
fn push_http_date(out: &mut String, unix_secs: u64) {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = unix_secs.min(MAX);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), proleptic
/// Gregorian, using 400-year eras starting on March 1st.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for line in lines {
            map.append(http::header::COOKIE, HeaderValue::from_str(line).unwrap());
        }
        map
    }

    fn cookie_cfg(domains: &[&str]) -> crate::config::Cookie {
        crate::config::Cookie {
            name: "_oauth2_proxy".into(),
            secret: vec![0; 32],
            domains: domains.iter().map(|d| d.to_string()).collect(),
            path: "/".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            expire: Duration::from_secs(168 * 3600),
            refresh: None,
        }
    }

    // --- jar ---

    #[test]
    fn jar_reads_every_cookie_header_line() {
        let map = headers(&["a=1; b=2", "c=3"]);
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.get("a"), Some("1"));
        assert_eq!(jar.get("b"), Some("2"));
        assert_eq!(jar.get("c"), Some("3"));
        assert_eq!(jar.get("d"), None);
    }

    #[test]
    fn jar_first_match_wins() {
        let map = headers(&["a=first", "a=second; a=third"]);
        assert_eq!(CookieJar::from_headers(&map).get("a"), Some("first"));
    }

    #[test]
    fn jar_splits_comma_joined_lines_from_envoy_grpc() {
        let map = headers(&["_oauth2_proxy=abc-_123,other=x, third=y;fourth=z"]);
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.get("_oauth2_proxy"), Some("abc-_123"));
        assert_eq!(jar.get("other"), Some("x"));
        assert_eq!(jar.get("third"), Some("y"));
        assert_eq!(jar.get("fourth"), Some("z"));
    }

    #[test]
    fn jar_keeps_commas_not_followed_by_a_pair() {
        let map = headers(&["list=a,b, c; next=1"]);
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.get("list"), Some("a,b, c"));
        assert_eq!(jar.get("next"), Some("1"));
    }

    #[test]
    fn jar_trims_spaces_and_strips_quotes() {
        let map = headers(&["  a =  \"quoted\" ;b=\"\";  c=\"half ;; d= x  "]);
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.get("a"), Some("quoted"));
        assert_eq!(jar.get("b"), Some(""));
        assert_eq!(jar.get("c"), Some("\"half"));
        assert_eq!(jar.get("d"), Some("x"));
    }

    #[test]
    fn jar_skips_pairs_without_name_or_equals() {
        let map = headers(&["novalue; =nameless; ok=1"]);
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.iter().collect::<Vec<_>>(), vec![("ok", "1")]);
    }

    #[test]
    fn jar_skips_non_utf8_pairs_but_keeps_the_rest() {
        let mut map = HeaderMap::new();
        map.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"bad=\xff\xfe; good=1").unwrap(),
        );
        let jar = CookieJar::from_headers(&map);
        assert_eq!(jar.get("good"), Some("1"));
        assert_eq!(jar.get("bad"), None);
    }

    #[test]
    fn jar_values_keep_equals_signs() {
        let jar = CookieJar::from_lines(["a=b=c==; x=1"]);
        assert_eq!(jar.get("a"), Some("b=c=="));
    }

    #[test]
    fn separator_search_agrees_with_a_byte_scan() {
        // Every length around the 8-byte word size, separators at every offset.
        for len in 0..40 {
            for at in 0..=len {
                for sep in [b';', b',', b'x'] {
                    let mut s = vec![b'a'; len];
                    if at < len {
                        s[at] = sep;
                    }
                    let want = s.iter().position(|&b| b == b';' || b == b',');
                    assert_eq!(find_separator(&s), want, "len {len} at {at} sep {sep}");
                }
            }
        }
        // Bytes that differ from `;`/`,` by one bit or borrow must not match.
        let near = b":<+-\x3a\xbb\xac\x00\xff";
        assert_eq!(find_separator(near), None);
        let long = "x".repeat(4000) + ";y=1";
        assert_eq!(find_separator(long.as_bytes()), Some(4000));
    }

    #[test]
    fn jar_from_no_headers_is_empty() {
        let map = HeaderMap::new();
        assert!(CookieJar::from_headers(&map).is_empty());
    }

    // --- own cookies ---

    #[test]
    fn own_cookie_names_matrix() {
        let name = "_oauth2_proxy";
        for own in [
            "_oauth2_proxy",
            "_oauth2_proxy_0",
            "_oauth2_proxy_12",
            "_oauth2_proxy_csrf",
            "_oauth2_proxy_csrf_abc123",
            "_oauth2_proxy_csrf_",
        ] {
            assert!(is_own_cookie(own, name), "{own}");
        }
        for other in [
            "_oauth2_proxy_other",
            "_oauth2_proxyx",
            "_oauth2_proxy_",
            "_oauth2_proxy_1a",
            "_oauth2_proxy_csrfx",
            "_oauth2",
            "x_oauth2_proxy",
            "",
        ] {
            assert!(!is_own_cookie(other, name), "{other}");
        }
    }

    #[test]
    fn strip_removes_own_cookies_and_keeps_others() {
        let header = "app=1; _oauth2_proxy=s; _oauth2_proxy_0=a; _oauth2_proxy_csrf_x=c; \
                      _oauth2_proxy_other=keep; _oauth2_proxyx=keep2";
        assert_eq!(
            strip_own_cookies(header, "_oauth2_proxy").as_deref(),
            Some("app=1; _oauth2_proxy_other=keep; _oauth2_proxyx=keep2")
        );
    }

    #[test]
    fn strip_without_own_cookies_borrows_the_input() {
        let header = "app=1;theme=dark";
        assert!(matches!(
            strip_own_cookies(header, "_oauth2_proxy"),
            Some(Cow::Borrowed("app=1;theme=dark"))
        ));
    }

    #[test]
    fn strip_of_only_own_cookies_is_none() {
        let header = "_oauth2_proxy=s; _oauth2_proxy_csrf=c ;_oauth2_proxy_1=b";
        assert_eq!(strip_own_cookies(header, "_oauth2_proxy"), None);
    }

    #[test]
    fn strip_handles_comma_joined_lines() {
        let header = "_oauth2_proxy=s,app=1, _oauth2_proxy_csrf=c";
        assert_eq!(
            strip_own_cookies(header, "_oauth2_proxy").as_deref(),
            Some("app=1")
        );
    }

    #[test]
    fn strip_keeps_segments_without_a_name() {
        let header = "flag; _oauth2_proxy=s";
        assert_eq!(
            strip_own_cookies(header, "_oauth2_proxy").as_deref(),
            Some("flag")
        );
    }

    #[test]
    fn strip_bytes_keeps_non_ascii_app_cookies_verbatim() {
        let line = b"app=1; pref=\xe9; _oauth2_proxy=x";
        assert_eq!(
            strip_own_cookies_bytes(line, "_oauth2_proxy").as_deref(),
            Some(&b"app=1; pref=\xe9"[..])
        );
        let line = b"_oauth2_proxy_csrf_ab=c;lang=\xc3\xa9 ; _oauth2_proxy_2=z, x=\xff\xfe";
        assert_eq!(
            strip_own_cookies_bytes(line, "_oauth2_proxy").as_deref(),
            Some(&b"lang=\xc3\xa9; x=\xff\xfe"[..])
        );
    }

    #[test]
    fn strip_bytes_without_own_cookies_borrows_and_of_only_own_is_none() {
        let line = b"pref=\xe9;app=1";
        assert!(matches!(
            strip_own_cookies_bytes(line, "_oauth2_proxy"),
            Some(Cow::Borrowed(b)) if b == line
        ));
        assert_eq!(
            strip_own_cookies_bytes(b"_oauth2_proxy=\xe9; _oauth2_proxy_0=a", "_oauth2_proxy"),
            None
        );
    }

    #[test]
    fn strip_bytes_never_mistakes_a_non_ascii_name_for_ours() {
        let line =
            b"_oauth2_proxy\xe9=1; _oauth2_proxy_\xe9=2; \xe9_oauth2_proxy=3; _oauth2_proxy=s";
        assert_eq!(
            strip_own_cookies_bytes(line, "_oauth2_proxy").as_deref(),
            Some(&b"_oauth2_proxy\xe9=1; _oauth2_proxy_\xe9=2; \xe9_oauth2_proxy=3"[..])
        );
    }

    // --- attributes ---

    #[test]
    fn domain_is_the_longest_matching_entry() {
        let cfg = cookie_cfg(&[".example.com", "app.example.com", "other.org"]);
        let attrs = CookieAttrs::for_request(&cfg, "x.app.example.com:8443");
        assert_eq!(attrs.domain.as_deref(), Some("app.example.com"));
        let attrs = CookieAttrs::for_request(&cfg, "grafana.EXAMPLE.com");
        assert_eq!(attrs.domain.as_deref(), Some("example.com"));
        let attrs = CookieAttrs::for_request(&cfg, "example.com");
        assert_eq!(attrs.domain.as_deref(), Some("example.com"));
    }

    #[test]
    fn domain_is_host_only_when_nothing_matches() {
        let cfg = cookie_cfg(&["example.com"]);
        assert_eq!(
            CookieAttrs::for_request(&cfg, "evilexample.com").domain,
            None
        );
        assert_eq!(CookieAttrs::for_request(&cfg, "[::1]:4180").domain, None);
        assert_eq!(
            CookieAttrs::for_request(&cookie_cfg(&[]), "example.com").domain,
            None
        );
    }

    #[test]
    fn port_is_stripped_from_hosts() {
        assert_eq!(host_without_port("a.example.com:443"), "a.example.com");
        assert_eq!(host_without_port("a.example.com"), "a.example.com");
        assert_eq!(host_without_port("[::1]:8080"), "[::1]");
        assert_eq!(host_without_port("::1"), "::1");
    }

    #[test]
    fn zero_expire_makes_a_session_cookie() {
        let mut cfg = cookie_cfg(&[]);
        cfg.expire = Duration::ZERO;
        let attrs = CookieAttrs::for_request(&cfg, "h");
        assert_eq!(attrs.max_age, None);
        assert_eq!(
            set_cookie("n", "v", &attrs),
            "n=v; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn set_cookie_renders_every_attribute() {
        let attrs = CookieAttrs {
            path: "/app".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            max_age: Some(Duration::from_secs(3600)),
        };
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37
        assert_eq!(
            attribute_suffix(&attrs, now),
            "; Path=/app; Domain=example.com; Max-Age=3600; \
             Expires=Sun, 06 Nov 1994 09:49:37 GMT; HttpOnly; Secure; SameSite=Strict"
        );
        let line = set_cookie("n", "v", &attrs);
        assert!(line.starts_with("n=v; Path=/app; Domain=example.com; Max-Age=3600; Expires="));
        assert!(line.ends_with(" GMT; HttpOnly; Secure; SameSite=Strict"));
    }

    #[test]
    fn set_cookie_omits_disabled_flags() {
        let attrs = CookieAttrs {
            path: "/".into(),
            domain: None,
            secure: false,
            http_only: false,
            same_site: SameSite::None,
            max_age: None,
        };
        assert_eq!(set_cookie("n", "v", &attrs), "n=v; Path=/; SameSite=None");
    }

    #[test]
    fn clear_cookie_expires_in_the_past() {
        let attrs = CookieAttrs::for_request(&cookie_cfg(&["example.com"]), "a.example.com");
        assert_eq!(
            clear_cookie("_oauth2_proxy", &attrs),
            "_oauth2_proxy=; Path=/; Domain=example.com; Max-Age=0; \
             Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax"
        );
    }

    #[test]
    fn http_dates_are_correct_and_fixed_width() {
        let cases = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_102_444_800, "Fri, 01 Jan 2100 00:00:00 GMT"),
            (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, want) in cases {
            let mut s = String::new();
            push_http_date(&mut s, secs);
            assert_eq!(s, want);
            assert_eq!(s.len(), 29);
        }
    }
}
