//! Session cookie chunking, compatible with oauth2-proxy: a value too large
//! for one cookie goes into `NAME_0`, `NAME_1`, … so that each whole
//! `Set-Cookie` value (name, value and attributes) stays within 4000 bytes,
//! under the 4096 that browsers guarantee per cookie.

use std::borrow::Cow;
use std::time::SystemTime;

use super::cookies::{attribute_suffix, clear_cookie, set_cookie_at, CookieAttrs, CookieJar};

/// The most bytes one whole `Set-Cookie` value may take.
pub const MAX_SET_COOKIE_LEN: usize = 4000;

/// The `Set-Cookie` values that store `value` as the session `name`: one
/// cookie when it fits, else numbered chunks. Cookies from an earlier,
/// differently-sized session that the jar shows (plain `NAME` or chunks past
/// the new count) are cleared so a reader never mixes old and new.
pub fn set_session_cookies(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    jar: &CookieJar<'_>,
) -> Vec<String> {
    // One `now` for all chunks: the same Expires everywhere. The suffix is
    // rendered once only to size the chunks exactly.
    let now = SystemTime::now();
    let suffix_len = attribute_suffix(attrs, now).len();
    let mut lines = Vec::new();

    if name.len() + 1 + value.len() + suffix_len <= MAX_SET_COOKIE_LEN {
        lines.push(set_cookie_at(name, value, attrs, now));
        push_clears(&mut lines, attrs, jar, |cookie| {
            chunk_suffix(cookie, name).is_some()
        });
        return lines;
    }

    let mut rest = value;
    let mut index = 0usize;
    while !rest.is_empty() {
        let chunk_name = format!("{name}_{index}");
        let overhead = chunk_name.len() + 1 + suffix_len;
        // An absurd path/domain could leave no room; still make progress.
        let room = MAX_SET_COOKIE_LEN.saturating_sub(overhead).max(1);
        let take = split_point(rest, room);
        lines.push(set_cookie_at(&chunk_name, &rest[..take], attrs, now));
        rest = &rest[take..];
        index += 1;
    }
    let count = index;
    push_clears(&mut lines, attrs, jar, |cookie| {
        // Non-canonical digits (`NAME_01`) are never read back: stale too.
        let stale_chunk = chunk_suffix(cookie, name).is_some_and(|n| n.is_none_or(|n| n >= count));
        cookie == name || stale_chunk
    });
    lines
}

/// The session value as the browser sent it: `NAME` when present and
/// non-empty (borrowed), else `NAME_0`, `NAME_1`, … joined up to the first
/// missing index. None when neither is there. Bytes, never checked as text:
/// the value must open as base64url anyway.
pub fn read_session_cookie<'a>(name: &str, jar: &CookieJar<'a>) -> Option<Cow<'a, [u8]>> {
    if let Some(value) = jar.get_bytes(name).filter(|v| !v.is_empty()) {
        return Some(Cow::Borrowed(value));
    }
    let mut chunks: Vec<(usize, &'a [u8])> = jar
        .iter_bytes()
        .filter_map(|(cookie, value)| Some((chunk_suffix(cookie, name)??, value)))
        .collect();
    // Stable: for a repeated index the first one in the header wins, as in `get`.
    chunks.sort_by_key(|(index, _)| *index);
    chunks.dedup_by_key(|(index, _)| *index);
    let run = chunks
        .iter()
        .enumerate()
        .take_while(|(expected, (index, _))| expected == index)
        .count();
    match &chunks[..run] {
        [] => None,
        [(_, only)] => Some(Cow::Borrowed(*only)),
        parts => {
            let mut joined = Vec::with_capacity(parts.iter().map(|(_, v)| v.len()).sum());
            for (_, part) in parts {
                joined.extend_from_slice(part);
            }
            Some(Cow::Owned(joined))
        }
    }
}

/// `Set-Cookie` values that end the session: `NAME` always, plus every
/// `NAME_<digits>` chunk the jar shows.
pub fn clear_session_cookies(name: &str, attrs: &CookieAttrs, jar: &CookieJar<'_>) -> Vec<String> {
    let mut lines = vec![clear_cookie(name, attrs)];
    push_clears(&mut lines, attrs, jar, |cookie| {
        chunk_suffix(cookie, name).is_some()
    });
    lines
}

/// Clears each distinct jar cookie that `stale` selects, once.
fn push_clears(
    lines: &mut Vec<String>,
    attrs: &CookieAttrs,
    jar: &CookieJar<'_>,
    stale: impl Fn(&str) -> bool,
) {
    let mut cleared: Vec<&str> = Vec::new();
    for (cookie, _) in jar.iter_bytes() {
        if stale(cookie) && !cleared.contains(&cookie) {
            cleared.push(cookie);
            lines.push(clear_cookie(cookie, attrs));
        }
    }
}

/// For `NAME_<digits>`: `Some(Some(n))` for a canonical index, `Some(None)`
/// for digits that are not one (leading zero, overflow). Else None.
fn chunk_suffix(cookie: &str, name: &str) -> Option<Option<usize>> {
    let digits = cookie.strip_prefix(name)?.strip_prefix('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Some(None);
    }
    Some(digits.parse().ok())
}

/// The largest char boundary at most `room` bytes into `s` (at least one
/// whole char, so splitting always progresses).
fn split_point(s: &str, room: usize) -> usize {
    if room >= s.len() {
        return s.len();
    }
    let mut at = room;
    while at > 0 && !s.is_char_boundary(at) {
        at -= 1;
    }
    if at == 0 {
        at = s.char_indices().nth(1).map_or(s.len(), |(i, _)| i);
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SameSite;
    use std::time::Duration;

    const NAME: &str = "_oauth2_proxy";

    fn attrs() -> CookieAttrs {
        CookieAttrs {
            path: "/".into(),
            domain: Some("apps.example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: Some(Duration::from_secs(168 * 3600)),
        }
    }

    fn value(len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|i| ALPHABET[(i * 31 + i / 7) % 64] as char)
            .collect()
    }

    /// The `name=value` pairs a browser would send back for these lines
    /// (cleared cookies dropped).
    fn cookie_header(lines: &[String]) -> String {
        lines
            .iter()
            .filter(|l| !l.contains("Max-Age=0"))
            .map(|l| l.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn names(lines: &[String]) -> Vec<&str> {
        lines.iter().map(|l| l.split('=').next().unwrap()).collect()
    }

    fn cleared(lines: &[String]) -> Vec<&str> {
        lines
            .iter()
            .filter(|l| l.contains("Max-Age=0"))
            .map(|l| l.split('=').next().unwrap())
            .collect()
    }

    #[test]
    fn small_value_is_one_cookie() {
        let jar = CookieJar::default();
        let lines = set_session_cookies(NAME, "abc", &attrs(), &jar);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(
            "_oauth2_proxy=abc; HttpOnly; SameSite=Lax; Secure; Path=/; Domain=apps.example.com"
        ));
    }

    #[test]
    fn ten_kb_value_splits_into_lines_within_4000_bytes_and_reassembles() {
        let v = value(10 * 1024);
        let lines = set_session_cookies(NAME, &v, &attrs(), &CookieJar::default());
        assert_eq!(
            names(&lines),
            vec!["_oauth2_proxy_0", "_oauth2_proxy_1", "_oauth2_proxy_2"]
        );
        for l in &lines {
            assert!(l.len() <= MAX_SET_COOKIE_LEN, "{} bytes", l.len());
        }
        // Chunks are filled: the first line is exactly at the limit.
        assert_eq!(lines[0].len(), MAX_SET_COOKIE_LEN);
        let header = cookie_header(&lines);
        let jar = CookieJar::from_lines([header.as_str()]);
        assert_eq!(
            read_session_cookie(NAME, &jar).as_deref(),
            Some(v.as_bytes())
        );
    }

    #[test]
    fn boundary_value_sizes_fit_exactly() {
        let suffix_len = attribute_suffix(&attrs(), SystemTime::now()).len();
        let fits = MAX_SET_COOKIE_LEN - NAME.len() - 1 - suffix_len;
        let one = set_session_cookies(NAME, &value(fits), &attrs(), &CookieJar::default());
        assert_eq!(names(&one), vec![NAME]);
        assert_eq!(one[0].len(), MAX_SET_COOKIE_LEN);
        let two = set_session_cookies(NAME, &value(fits + 1), &attrs(), &CookieJar::default());
        assert_eq!(names(&two), vec!["_oauth2_proxy_0", "_oauth2_proxy_1"]);
        assert!(two.iter().all(|l| l.len() <= MAX_SET_COOKIE_LEN));
    }

    #[test]
    fn many_chunks_with_two_digit_indexes_stay_within_limit() {
        let v = value(50_000);
        let lines = set_session_cookies(NAME, &v, &attrs(), &CookieJar::default());
        assert!(lines.len() > 10);
        assert!(lines.iter().all(|l| l.len() <= MAX_SET_COOKIE_LEN));
        let header = cookie_header(&lines);
        let jar = CookieJar::from_lines([header.as_str()]);
        assert_eq!(
            read_session_cookie(NAME, &jar).as_deref(),
            Some(v.as_bytes())
        );
    }

    #[test]
    fn single_cookie_clears_stale_chunks() {
        let jar = CookieJar::from_lines([
            "_oauth2_proxy_0=a; app=1; _oauth2_proxy_1=b; _oauth2_proxy_0=dup",
        ]);
        let lines = set_session_cookies(NAME, "small", &attrs(), &jar);
        assert_eq!(names(&lines)[0], NAME);
        assert_eq!(cleared(&lines), vec!["_oauth2_proxy_0", "_oauth2_proxy_1"]);
    }

    #[test]
    fn chunked_cookie_clears_stale_plain_cookie_and_higher_chunks() {
        let jar = CookieJar::from_lines([
            "_oauth2_proxy=old; _oauth2_proxy_1=b; _oauth2_proxy_5=x; _oauth2_proxy_csrf=c",
        ]);
        let lines = set_session_cookies(NAME, &value(6000), &attrs(), &jar);
        assert_eq!(
            names(&lines),
            vec![
                "_oauth2_proxy_0",
                "_oauth2_proxy_1",
                "_oauth2_proxy",
                "_oauth2_proxy_5"
            ]
        );
        assert_eq!(cleared(&lines), vec!["_oauth2_proxy", "_oauth2_proxy_5"]);
    }

    #[test]
    fn plain_cookie_wins_over_chunks() {
        let jar = CookieJar::from_lines(["_oauth2_proxy_0=a; _oauth2_proxy=plain"]);
        assert!(matches!(
            read_session_cookie(NAME, &jar),
            Some(Cow::Borrowed(b"plain"))
        ));
    }

    #[test]
    fn chunks_stop_at_the_first_missing_index() {
        let jar =
            CookieJar::from_lines(["_oauth2_proxy_1=b; _oauth2_proxy_0=a; _oauth2_proxy_3=d"]);
        assert_eq!(
            read_session_cookie(NAME, &jar).as_deref(),
            Some(b"ab".as_slice())
        );
        let jar = CookieJar::from_lines(["_oauth2_proxy_1=b"]);
        assert_eq!(read_session_cookie(NAME, &jar), None);
    }

    #[test]
    fn chunk_reading_ignores_non_canonical_and_foreign_names() {
        let jar = CookieJar::from_lines([
            "_oauth2_proxy_0=a; _oauth2_proxy_01=x; _oauth2_proxy_csrf=c; _oauth2_proxy_1=b; _oauth2_proxy_0=dup",
        ]);
        assert_eq!(
            read_session_cookie(NAME, &jar).as_deref(),
            Some(b"ab".as_slice())
        );
    }

    #[test]
    fn no_session_cookie_reads_none() {
        let jar = CookieJar::from_lines(["app=1; _oauth2_proxy="]);
        assert_eq!(read_session_cookie(NAME, &jar), None);
    }

    #[test]
    fn clearing_covers_plain_and_every_chunk_present() {
        let jar =
            CookieJar::from_lines(["_oauth2_proxy_0=a; _oauth2_proxy_2=c; _oauth2_proxy_csrf=x"]);
        let lines = clear_session_cookies(NAME, &attrs(), &jar);
        assert_eq!(
            cleared(&lines),
            vec![NAME, "_oauth2_proxy_0", "_oauth2_proxy_2"]
        );
        let lines = clear_session_cookies(NAME, &attrs(), &CookieJar::default());
        assert_eq!(cleared(&lines), vec![NAME]);
    }

    #[test]
    fn split_point_respects_char_boundaries() {
        assert_eq!(split_point("aé", 2), 1);
        assert_eq!(split_point("éa", 1), 2);
        assert_eq!(split_point("abc", 10), 3);
    }
}
