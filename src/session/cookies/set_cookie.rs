//! `Set-Cookie` values: the attributes of every cookie authgate sets for one
//! request ([`CookieAttrs`], with oauth2-proxy's `Domain` choice) and their
//! rendering by the `cookie` crate (RFC 6265 §4.1), `Expires` next to
//! `Max-Age`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cookie::time::{Duration as CookieDuration, OffsetDateTime};
use cookie::{Cookie, CookieBuilder};

use crate::config::SameSite;

// === impl CookieAttrs ===

/// The attributes of every cookie authgate sets for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieAttrs {
    /// The `Path` attribute (`cookie.path`).
    pub path: String,
    /// None: a host-only cookie (no `Domain` attribute).
    pub domain: Option<String>,
    /// The `Secure` attribute (`cookie.secure`).
    pub secure: bool,
    /// The `HttpOnly` attribute (`cookie.http_only`).
    pub http_only: bool,
    /// The `SameSite` attribute (`cookie.same_site`).
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

/// A whole `Set-Cookie` value, rendered by the `cookie` crate. `name` and
/// `value` must be cookie-safe (config names, base64url values): they are
/// written as given. `Expires` is `now + max_age`, next to `Max-Age` for
/// clients that only know the former.
pub fn set_cookie(name: &str, value: &str, attrs: &CookieAttrs) -> String {
    set_cookie_at(name, value, attrs, SystemTime::now())
}

/// [`set_cookie`] with `Expires` counted from `now`: the chunks of one
/// session share one `now`, so they expire together.
pub(crate) fn set_cookie_at(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    now: SystemTime,
) -> String {
    let mut cookie = with_attrs(Cookie::build((name, value)), attrs);
    if let Some(max_age) = attrs.max_age {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        cookie = cookie
            .max_age(seconds(max_age.as_secs()))
            .expires(http_date(now.as_secs().saturating_add(max_age.as_secs())));
    }
    cookie.build().to_string()
}

/// A `Set-Cookie` value that deletes `name` (same path and domain, so the
/// browser matches the cookie it holds): empty value, `Max-Age=0` and an
/// `Expires` at the Unix epoch (RFC 6265 §3.1).
pub fn clear_cookie(name: &str, attrs: &CookieAttrs) -> String {
    with_attrs(Cookie::build((name, "")), attrs)
        .max_age(CookieDuration::ZERO)
        .expires(OffsetDateTime::UNIX_EPOCH)
        .build()
        .to_string()
}

/// Everything [`set_cookie_at`] writes after `name=value`, starting with
/// `; `. Its length does not depend on `now` (the date is fixed-width, see
/// [`http_date`]), which chunking relies on.
pub(crate) fn attribute_suffix(attrs: &CookieAttrs, now: SystemTime) -> String {
    // The crate writes `name=value` then the attributes: with both empty,
    // what follows the `=` is exactly the suffix.
    let mut line = set_cookie_at("", "", attrs, now);
    line.remove(0);
    line
}

/// The attributes every cookie authgate sets or clears carries. `Secure` and
/// `HttpOnly` are set explicitly to false when off: left unset, the crate
/// would add `Secure` by itself to a `SameSite=None` cookie.
fn with_attrs<'c>(cookie: CookieBuilder<'c>, attrs: &'c CookieAttrs) -> CookieBuilder<'c> {
    let mut cookie = cookie
        .path(attrs.path.as_str())
        .http_only(attrs.http_only)
        .secure(attrs.secure)
        .same_site(match attrs.same_site {
            SameSite::Lax => cookie::SameSite::Lax,
            SameSite::Strict => cookie::SameSite::Strict,
            SameSite::None => cookie::SameSite::None,
        });
    if let Some(domain) = &attrs.domain {
        cookie = cookie.domain(domain.as_str());
    }
    cookie
}

/// `Max-Age` seconds; beyond `i64` (no config gets there) clamped.
fn seconds(secs: u64) -> CookieDuration {
    CookieDuration::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// An `Expires` instant (Unix seconds). Clamped to the end of year 9999 so
/// the IMF-fixdate stays four-digit and 29 bytes long whatever `now` is.
fn http_date(unix_secs: u64) -> OffsetDateTime {
    const MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let secs = i64::try_from(unix_secs).unwrap_or(MAX).min(MAX);
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_cfg(domains: &[&str]) -> crate::config::Cookie {
        crate::config::Cookie {
            name: "_oauth2_proxy".into(),
            secret: crate::domain::Secret::new(vec![0; 32]),
            previous_secrets: Vec::new(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            path: "/".into(),
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
            expire: Duration::from_secs(168 * 3600),
            refresh: None,
        }
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
            "n=v; HttpOnly; SameSite=Lax; Secure; Path=/"
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
            "; HttpOnly; SameSite=Strict; Secure; Path=/app; Domain=example.com; \
             Max-Age=3600; Expires=Sun, 06 Nov 1994 09:49:37 GMT"
        );
        let line = set_cookie("n", "v", &attrs);
        assert!(line.starts_with(
            "n=v; HttpOnly; SameSite=Strict; Secure; Path=/app; Domain=example.com; \
             Max-Age=3600; Expires="
        ));
        assert!(line.ends_with(" GMT"));
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
        // Unset, the crate would add `Secure` to `SameSite=None` by itself.
        assert_eq!(set_cookie("n", "v", &attrs), "n=v; SameSite=None; Path=/");
    }

    #[test]
    fn clear_cookie_expires_in_the_past() {
        let attrs = CookieAttrs::for_request(&cookie_cfg(&["example.com"]), "a.example.com");
        assert_eq!(
            clear_cookie("_oauth2_proxy", &attrs),
            "_oauth2_proxy=; HttpOnly; SameSite=Lax; Secure; Path=/; Domain=example.com; \
             Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
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
            let line = Cookie::build(("n", "v"))
                .expires(http_date(secs))
                .build()
                .to_string();
            let s = line.strip_prefix("n=v; Expires=").unwrap();
            assert_eq!(s, want);
            assert_eq!(s.len(), 29);
        }
    }

    #[test]
    fn set_cookie_values_parse_back_with_every_attribute() {
        let attrs = CookieAttrs {
            path: "/app".into(),
            domain: Some("example.com".into()),
            secure: true,
            http_only: true,
            same_site: SameSite::Strict,
            max_age: Some(Duration::from_secs(3600)),
        };
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let line = set_cookie_at("n", "v", &attrs, now);
        let c = Cookie::parse(line.as_str()).unwrap();
        assert_eq!(c.name_value(), ("n", "v"));
        assert_eq!(c.path(), Some("/app"));
        assert_eq!(c.domain(), Some("example.com"));
        assert_eq!(c.secure(), Some(true));
        assert_eq!(c.http_only(), Some(true));
        assert_eq!(c.same_site(), Some(cookie::SameSite::Strict));
        assert_eq!(c.max_age(), Some(CookieDuration::seconds(3600)));
        assert_eq!(
            c.expires_datetime().map(|t| t.unix_timestamp()),
            Some(784_111_777 + 3600)
        );
        assert_eq!(line, format!("n=v{}", attribute_suffix(&attrs, now)));
    }
}
