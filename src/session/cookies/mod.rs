//! Cookies on both sides of a request: reading the `Cookie` header(s) into a
//! [`CookieJar`], removing authgate's own cookies before they go upstream
//! ([`strip_own_cookie_lines`]), and rendering `Set-Cookie` values with the
//! configured attributes (the `cookie` crate).
//!
//! Parsing is lenient and allocation-light: the jar holds slices of the
//! header values. Besides `;`, a `,` separates pairs when it is followed by
//! `name=`, because Envoy's gRPC ext_authz joins repeated `cookie` lines
//! with `,` (the contract's "a `cookie` joined from several lines with `,`").
//! Cookie values never contain `,` per RFC 6265, and ours are base64url.
//!
//! Reading stays on this byte scan rather than `cookie::Cookie::split_parse`:
//! it runs on every request over KBs of session chunks, and
//! `benches/cookies.rs` measures it at about half the crate's cost (the crate
//! also splits on `;` only, needs the whole line to be UTF-8, and keeps
//! quotes). Writing (`Set-Cookie`) goes through the crate, whose attribute
//! order is `HttpOnly; SameSite; Secure; Path; Domain; Max-Age; Expires`.

mod set_cookie;

use std::borrow::Cow;

pub(crate) use set_cookie::{attribute_suffix, set_cookie_at};
pub use set_cookie::{clear_cookie, set_cookie, CookieAttrs};

// === impl CookieJar ===

/// The request's cookies as `(name, value)` slices, in header order.
///
/// Values stay bytes until asked for as text: the session value (KBs of
/// base64url) is read as bytes ([`CookieJar::get_bytes`]), so the UTF-8
/// check of every request's largest value is skipped, about 2,000
/// instructions per signed-in request.
#[derive(Debug, Clone, Default)]
pub struct CookieJar<'a> {
    pairs: Vec<(&'a str, &'a [u8])>,
}

impl<'a> CookieJar<'a> {
    /// Reads every `cookie` header line. A pair whose name is not UTF-8 is
    /// skipped, and the text views skip values that are not: one bad
    /// third-party cookie must not hide ours.
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

    /// The value of the first cookie called `name` whose value is UTF-8
    /// (trimmed, surrounding double quotes removed).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .filter(|(n, _)| *n == name)
            .find_map(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// The value of the first cookie called `name`, as the bytes it was
    /// sent as (trimmed, surrounding double quotes removed).
    pub fn get_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| *value)
    }

    /// The `(name, value)` pairs whose value is UTF-8, in header order,
    /// duplicates included.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.pairs
            .iter()
            .filter_map(|(n, v)| Some((*n, std::str::from_utf8(v).ok()?)))
    }

    /// Every `(name, value)` pair, values as bytes, in header order.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.pairs.iter().copied()
    }

    /// Whether the request carried no (readable) cookie at all.
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
/// of several KB (a sealed session, read once for the session and once for
/// the upstream rewrite), so it is `memchr2` (SIMD, 16–32 bytes a step),
/// not a byte loop.
fn find_separator(s: &[u8]) -> Option<usize> {
    memchr::memchr2(b';', b',', s)
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

fn parse_pair(segment: &[u8]) -> Option<(&str, &[u8])> {
    let eq = segment.iter().position(|&b| b == b'=')?;
    let name = trim(&segment[..eq]);
    if name.is_empty() {
        return None;
    }
    let mut value = trim(&segment[eq + 1..]);
    if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
        value = &value[1..value.len() - 1];
    }
    Some((std::str::from_utf8(name).ok()?, value))
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

/// What to do with the request's `Cookie` header so the upstream never sees
/// authgate's cookies (session, chunks, CSRF): the contract's "own cookies
/// stripped" on every listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieEdit {
    /// No line carries one of ours: forward the header(s) untouched.
    Keep,
    /// Ours were removed: send this one line instead of all `Cookie` lines.
    Replace(http::HeaderValue),
    /// Only ours were present: drop every `Cookie` line.
    Remove,
}

/// All `Cookie` lines of a request → one edit; kept pairs of several lines
/// joined with `"; "` (RFC 6265 §5.4 sends one line; HTTP/2 may split it).
///
/// A line without own cookies is kept byte for byte; in a line with some,
/// the other pairs are kept verbatim (non-ASCII app cookies included) and
/// re-joined with `"; "`; a line of only own cookies contributes nothing.
/// `name` is the configured session cookie name (see [`is_own_cookie`]).
pub fn strip_own_cookie_lines<'h>(
    lines: impl IntoIterator<Item = &'h http::HeaderValue>,
    name: &str,
) -> CookieEdit {
    let mut changed = false;
    let mut kept: Vec<u8> = Vec::new();
    for line in lines {
        let part = strip_line(line.as_bytes(), name);
        changed |= matches!(part, None | Some(Cow::Owned(_)));
        if let Some(part) = part {
            if !kept.is_empty() {
                kept.extend_from_slice(b"; ");
            }
            kept.extend_from_slice(&part);
        }
    }
    if !changed {
        return CookieEdit::Keep;
    }
    if kept.is_empty() {
        return CookieEdit::Remove;
    }
    // The bytes are cut from valid header values, so this cannot fail; if it
    // ever did, dropping the header is the side that keeps ours from the app.
    http::HeaderValue::from_bytes(&kept).map_or(CookieEdit::Remove, CookieEdit::Replace)
}

/// One line without authgate's cookies: `Borrowed` when none was present,
/// `Owned` with the other pairs joined by `"; "`, `None` when nothing remains.
///
/// One pass over the line (it carries KBs of sealed session): nothing is
/// copied until the first own cookie; then the segments before it (the
/// application's, usually few and short) are split again and copied.
fn strip_line<'h>(line: &'h [u8], name: &str) -> Option<Cow<'h, [u8]>> {
    let is_ours = |segment: &[u8]| {
        segment_name(segment).is_some_and(|n| is_own_cookie_bytes(n, name.as_bytes()))
    };
    let push = |kept: &mut Vec<u8>, segment: &[u8]| {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(segment);
    };
    let mut segments = PairSplitter::new(line);
    let Some(first_own) = segments.by_ref().find(|s| is_ours(s)) else {
        return Some(Cow::Borrowed(line));
    };
    let mut kept = Vec::new();
    // The same splitter over the same line yields the same segments, so the
    // ones before `first_own` are those that start before it.
    let own_at = first_own.as_ptr() as usize;
    for segment in PairSplitter::new(line).take_while(|s| (s.as_ptr() as usize) < own_at) {
        push(&mut kept, segment);
    }
    for segment in segments.filter(|s| !is_ours(s)) {
        push(&mut kept, segment);
    }
    (!kept.is_empty()).then_some(Cow::Owned(kept))
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
        assert_eq!(jar.iter().collect::<Vec<_>>(), vec![("good", "1")]);
        // As bytes, the value is there as sent; a later UTF-8 duplicate is
        // what the text view finds.
        assert_eq!(jar.get_bytes("bad"), Some(b"\xff\xfe".as_slice()));
        let map = headers(&["a=1"]);
        let mut map2 = HeaderMap::new();
        map2.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"a=\xff; a=2").unwrap(),
        );
        assert_eq!(CookieJar::from_headers(&map2).get("a"), Some("2"));
        assert_eq!(
            CookieJar::from_headers(&map).get_bytes("a"),
            Some(b"1".as_slice())
        );
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

    /// One line through [`strip_own_cookie_lines`], in the shape of the
    /// former per-line stripper: Keep → the input borrowed, Replace → the
    /// kept pairs, Remove → None.
    fn strip_own_cookies_bytes<'h>(line: &'h [u8], name: &str) -> Option<Cow<'h, [u8]>> {
        match strip_own_cookie_lines([&HeaderValue::from_bytes(line).unwrap()], name) {
            CookieEdit::Keep => Some(Cow::Borrowed(line)),
            CookieEdit::Replace(v) => Some(Cow::Owned(v.as_bytes().to_vec())),
            CookieEdit::Remove => None,
        }
    }

    /// [`strip_own_cookies_bytes`] for string lines.
    fn strip_own_cookies<'h>(line: &'h str, name: &str) -> Option<Cow<'h, str>> {
        match strip_own_cookies_bytes(line.as_bytes(), name)? {
            Cow::Borrowed(_) => Some(Cow::Borrowed(line)),
            Cow::Owned(kept) => Some(Cow::Owned(String::from_utf8(kept).unwrap())),
        }
    }

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
    fn strip_keeps_every_app_cookie_before_the_first_own_one() {
        // The pairs before ours are split again: same segments as the scan.
        let header = "list=a,b, c; x=1,y=2 ;flag; _oauth2_proxy_0=s, z=3; _oauth2_proxy_1=t";
        assert_eq!(
            strip_own_cookies(header, "_oauth2_proxy").as_deref(),
            Some("list=a,b, c; x=1; y=2; flag; z=3")
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

    fn values(lines: &[&[u8]]) -> Vec<HeaderValue> {
        lines
            .iter()
            .map(|l| HeaderValue::from_bytes(l).unwrap())
            .collect()
    }

    fn replaced(edit: CookieEdit) -> Vec<u8> {
        match edit {
            CookieEdit::Replace(v) => v.as_bytes().to_vec(),
            other => panic!("expected Replace, got {other:?}"),
        }
    }

    #[test]
    fn lines_one_line_loses_only_own_cookies() {
        let lines = values(&[b"app=1; _oauth2_proxy=s; _oauth2_proxy_0=a; theme=dark"]);
        assert_eq!(
            replaced(strip_own_cookie_lines(&lines, "_oauth2_proxy")),
            b"app=1; theme=dark"
        );
    }

    #[test]
    fn lines_several_lines_are_joined_and_untouched_lines_kept_verbatim() {
        let lines = values(&[
            b"a=1;b=2",
            b"_oauth2_proxy_csrf_x=c, c=3",
            b"_oauth2_proxy_1=z",
            b"d=4",
        ]);
        assert_eq!(
            replaced(strip_own_cookie_lines(&lines, "_oauth2_proxy")),
            b"a=1;b=2; c=3; d=4"
        );
    }

    #[test]
    fn lines_of_only_own_cookies_are_removed() {
        let lines = values(&[
            b"_oauth2_proxy=s",
            b"_oauth2_proxy_csrf=c ;_oauth2_proxy_1=b",
        ]);
        assert_eq!(
            strip_own_cookie_lines(&lines, "_oauth2_proxy"),
            CookieEdit::Remove
        );
    }

    #[test]
    fn lines_without_own_cookies_are_kept() {
        let lines = values(&[b"app=1;theme=dark", b"pref=\xe9, _oauth2_proxy_other=1"]);
        assert_eq!(
            strip_own_cookie_lines(&lines, "_oauth2_proxy"),
            CookieEdit::Keep
        );
        assert_eq!(
            strip_own_cookie_lines(HeaderMap::new().get_all(http::header::COOKIE), "n"),
            CookieEdit::Keep
        );
    }

    #[test]
    fn lines_keep_non_ascii_app_cookies_verbatim() {
        let lines = values(&[
            b"_oauth2_proxy_csrf_ab=c;lang=\xc3\xa9 ; _oauth2_proxy_2=z",
            b"x=\xff\xfe",
            b"_oauth2_proxy\xe9=1; _oauth2_proxy=s",
        ]);
        assert_eq!(
            replaced(strip_own_cookie_lines(&lines, "_oauth2_proxy")),
            b"lang=\xc3\xa9; x=\xff\xfe; _oauth2_proxy\xe9=1"
        );
    }
}
