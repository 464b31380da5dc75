//! Reading the session out of the `Cookie` header, the per-request cost:
//! authgate's own byte scan (`CookieJar`) against the `cookie` crate's
//! `Cookie::split_parse`, on a realistic header (8 application cookies and a
//! session in 3 chunks). Also what rendering `Set-Cookie` values costs.
//! Run with `cargo bench --bench cookies`.

use std::borrow::Cow;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue};

use authgate::config::SameSite;
use authgate::session::chunks::{read_session_cookie, set_session_cookies};
use authgate::session::cookies::{set_cookie, strip_own_cookie_lines, CookieAttrs, CookieJar};

const NAME: &str = "_oauth2_proxy";

/// base64url text of `len` bytes, like a sealed session.
fn sealed(len: usize, seed: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..len)
        .map(|i| ALPHABET[(i * 31 + i / 7 + seed) % 64] as char)
        .collect()
}

fn attrs() -> CookieAttrs {
    CookieAttrs {
        path: "/".into(),
        domain: Some("apps.example.com".into()),
        secure: true,
        http_only: true,
        same_site: SameSite::Lax,
        max_age: Some(std::time::Duration::from_secs(168 * 3600)),
    }
}

/// One `Cookie` line as a browser sends it: application cookies around the
/// three session chunks that `set_session_cookies` makes of a 10 KB value.
fn header() -> (HeaderMap, String) {
    let session = sealed(10 * 1024, 0);
    let chunks: Vec<String> = set_session_cookies(NAME, &session, &attrs(), &CookieJar::default())
        .into_iter()
        .map(|l| l.split(';').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(chunks.len(), 3, "a 3-chunk session");
    let app = [
        "_ga=GA1.2.1234567890.1700000000".to_owned(),
        "_gid=GA1.2.987654321.1700000000".to_owned(),
        "theme=dark".to_owned(),
        "lang=en-US".to_owned(),
        format!("grafana_session={}", sealed(32, 1)),
        format!("csrftoken={}", sealed(64, 2)),
        "tz=Europe%2FBerlin".to_owned(),
        format!("XSRF-TOKEN={}", sealed(40, 3)),
    ];
    let mut pairs: Vec<&str> = Vec::new();
    pairs.extend(app[..5].iter().map(String::as_str));
    pairs.extend(chunks.iter().map(String::as_str));
    pairs.extend(app[5..].iter().map(String::as_str));
    let line = pairs.join("; ");
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        HeaderValue::from_str(&line).expect("cookie line"),
    );
    (headers, session)
}

/// The same jar built with the `cookie` crate, with what authgate needs on
/// top: per-pair quotes removed and Envoy's `,`-joined lines split (the crate
/// splits on `;` only). A non-UTF-8 line is skipped whole here, where the
/// byte scan keeps its good pairs.
fn crate_jar(headers: &HeaderMap) -> Vec<(&str, &str)> {
    let mut pairs = Vec::new();
    for line in headers.get_all(http::header::COOKIE) {
        let Ok(line) = std::str::from_utf8(line.as_bytes()) else {
            continue;
        };
        for c in cookie::Cookie::split_parse(line).flatten() {
            let (Some(name), Some(value)) = (c.name_raw(), c.value_raw()) else {
                continue;
            };
            push_comma_split(&mut pairs, name, value);
        }
    }
    pairs
}

fn push_comma_split<'a>(pairs: &mut Vec<(&'a str, &'a str)>, name: &'a str, value: &'a str) {
    let mut name = name;
    let mut rest = value;
    loop {
        let cut = rest.match_indices(',').find_map(|(i, _)| {
            let after = rest[i + 1..].trim_start_matches([' ', '\t']);
            let n = after
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
                .count();
            (n > 0 && after.as_bytes().get(n) == Some(&b'='))
                .then(|| (i, &after[..n], &after[n + 1..]))
        });
        match cut {
            Some((i, next_name, next_rest)) => {
                pairs.push((name, unquote(rest[..i].trim())));
                name = next_name;
                rest = next_rest;
            }
            None => {
                pairs.push((name, unquote(rest)));
                return;
            }
        }
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `read_session_cookie` over the crate's pairs (plain cookie, else chunks
/// 0, 1, … joined), as the request path needs it.
fn crate_read_session<'a>(pairs: &[(&'a str, &'a str)]) -> Option<Cow<'a, str>> {
    let get = |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    if let Some(v) = get(NAME).filter(|v| !v.is_empty()) {
        return Some(Cow::Borrowed(v));
    }
    let mut joined = String::new();
    for i in 0.. {
        match get(&format!("{NAME}_{i}")) {
            Some(part) => joined.push_str(part),
            None => break,
        }
    }
    (!joined.is_empty()).then_some(Cow::Owned(joined))
}

fn bench(c: &mut Criterion) {
    let (headers, session) = header();
    let names = [
        NAME,
        "_oauth2_proxy_0",
        "_oauth2_proxy_1",
        "_oauth2_proxy_2",
    ];

    // Both read the same session and the same pairs.
    let jar = CookieJar::from_headers(&headers);
    let theirs = crate_jar(&headers);
    assert_eq!(jar.iter().collect::<Vec<_>>(), theirs);
    assert_eq!(
        read_session_cookie(NAME, &jar).as_deref(),
        Some(session.as_bytes())
    );
    assert_eq!(
        crate_read_session(&theirs).as_deref(),
        Some(session.as_str())
    );

    let mut g = c.benchmark_group("jar_lookup");
    g.bench_function("byte_scan", |b| {
        b.iter(|| {
            let jar = CookieJar::from_headers(black_box(&headers));
            names.map(|n| jar.get(n).map(str::len))
        })
    });
    g.bench_function("cookie_crate", |b| {
        b.iter(|| {
            let pairs = crate_jar(black_box(&headers));
            names.map(|n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.len()))
        })
    });
    // The crate alone (`;` only, no quotes, no `,` rule): its floor.
    g.bench_function("cookie_crate_bare", |b| {
        b.iter(|| {
            let line = black_box(&headers)
                .get(http::header::COOKIE)
                .map_or("", |v| std::str::from_utf8(v.as_bytes()).unwrap_or(""));
            let pairs: Vec<_> = cookie::Cookie::split_parse(line).flatten().collect();
            names.map(|n| {
                pairs
                    .iter()
                    .find(|c| c.name() == n)
                    .map(|c| c.value().len())
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("read_session");
    g.bench_function("byte_scan", |b| {
        b.iter(|| {
            let jar = CookieJar::from_headers(black_box(&headers));
            read_session_cookie(NAME, &jar).map(|s| s.len())
        })
    });
    g.bench_function("cookie_crate", |b| {
        b.iter(|| crate_read_session(&crate_jar(black_box(&headers))).map(|s| s.len()))
    });
    g.finish();

    c.bench_function("strip_own_cookie_lines", |b| {
        b.iter(|| strip_own_cookie_lines(black_box(&headers).get_all(http::header::COOKIE), NAME))
    });
    c.bench_function("set_cookie/one", |b| {
        b.iter(|| set_cookie(NAME, black_box("abc"), &attrs()))
    });
    c.bench_function("set_cookie/session_3_chunks", |b| {
        b.iter(|| set_session_cookies(NAME, black_box(&session), &attrs(), &CookieJar::default()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
