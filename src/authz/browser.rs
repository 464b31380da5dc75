//! Is this request a page navigation (worth a login redirect) or an API
//! call (answered 401)? Also: is it a CORS preflight?
//!
//! Redirecting an XHR or `fetch` to the IdP only yields an opaque CORS error
//! in the page, so only navigations are sent to log in. Envoy forwards to an
//! HTTP ext_authz service only the headers its provider config lists, so a
//! request without any of the telling headers counts as a browser.
//!
//! Pure functions over `http::HeaderMap`: no allocation, no panics, no logs.

use http::header::{ACCEPT, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN};
use http::{HeaderMap, HeaderName};

const SEC_FETCH_MODE: HeaderName = HeaderName::from_static("sec-fetch-mode");
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// True unless the headers say this is not a page navigation.
///
/// Called by the decision for unauthenticated requests, to choose between
/// a 302 to the IdP and a 401. Non-browser when any of:
/// - `Sec-Fetch-Mode` is present and is not `navigate`;
/// - `Accept` is present (on one or several lines) and no media range in it
///   is `text/html` with a non-zero `q` (so `*/*` alone, as curl sends, is
///   non-browser);
/// - `X-Requested-With: XMLHttpRequest`.
///
/// Header values compare case-insensitively; non-UTF-8 values are compared
/// as bytes.
pub fn is_browser(headers: &HeaderMap) -> bool {
    let fetch_mode_not_navigate = headers
        .get_all(SEC_FETCH_MODE)
        .iter()
        .any(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"navigate"));
    if fetch_mode_not_navigate {
        return false;
    }

    let xhr = headers.get_all(X_REQUESTED_WITH).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"XMLHttpRequest")
    });
    if xhr {
        return false;
    }

    let mut accept = headers.get_all(ACCEPT).iter().peekable();
    if accept.peek().is_none() {
        return true;
    }
    accept.any(|v| accepts_html(v.as_bytes()))
}

/// True for a CORS preflight: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`. With `skip_preflight` the decision lets
/// these through unauthenticated (browsers never attach credentials to them).
pub fn is_preflight(method: &str, headers: &HeaderMap) -> bool {
    method.eq_ignore_ascii_case("OPTIONS")
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether one `Accept` line lists `text/html` without refusing it (`q=0`).
fn accepts_html(value: &[u8]) -> bool {
    value.split(|&c| c == b',').any(|range| {
        let mut parts = range.split(|&c| c == b';');
        let media = parts.next().unwrap_or_default().trim_ascii();
        media.eq_ignore_ascii_case(b"text/html") && !parts.any(is_zero_quality)
    })
}

/// `q=0`, `q=0.`, `q=0.000`: the client refuses this media range.
fn is_zero_quality(param: &[u8]) -> bool {
    let param = param.trim_ascii();
    let Some((name, value)) = param.split_at_checked(1) else {
        return false;
    };
    if !name.eq_ignore_ascii_case(b"q") {
        return false;
    }
    let Some(value) = value.trim_ascii_start().strip_prefix(b"=") else {
        return false;
    };
    match value.trim_ascii() {
        [b'0'] => true,
        [b'0', b'.', zeros @ ..] => zeros.iter().all(|&c| c == b'0'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn no_telling_headers_counts_as_browser() {
        assert!(is_browser(&HeaderMap::new()));
        assert!(is_browser(&headers(&[
            ("cookie", "a=b"),
            ("user-agent", "curl/8")
        ])));
    }

    #[test]
    fn page_navigation_is_browser() {
        let chrome = headers(&[
            ("sec-fetch-mode", "navigate"),
            (
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            ),
        ]);
        assert!(is_browser(&chrome));
        assert!(is_browser(&headers(&[("accept", "TEXT/HTML")])));
        assert!(is_browser(&headers(&[("sec-fetch-mode", "Navigate")])));
        assert!(is_browser(&headers(&[("accept", " text/html ; q=0.5 ")])));
    }

    #[test]
    fn fetch_mode_other_than_navigate_is_not_browser() {
        for mode in ["cors", "no-cors", "same-origin", "websocket", ""] {
            let h = headers(&[("sec-fetch-mode", mode), ("accept", "text/html")]);
            assert!(!is_browser(&h), "mode {mode:?}");
        }
    }

    #[test]
    fn accept_without_html_is_not_browser() {
        for accept in ["application/json", "*/*", "text/plain, application/xml", ""] {
            assert!(!is_browser(&headers(&[("accept", accept)])), "{accept:?}");
        }
    }

    #[test]
    fn html_refused_with_zero_quality_is_not_browser() {
        for accept in ["text/html;q=0", "text/html; Q = 0.000", "text/html;q=0."] {
            assert!(!is_browser(&headers(&[("accept", accept)])), "{accept:?}");
        }
        assert!(is_browser(&headers(&[("accept", "text/html;q=0.01")])));
    }

    #[test]
    fn html_on_any_accept_line_counts() {
        let h = headers(&[("accept", "application/json"), ("accept", "text/html")]);
        assert!(is_browser(&h));
        let h = headers(&[("accept", "application/json"), ("accept", "image/png")]);
        assert!(!is_browser(&h));
    }

    #[test]
    fn xhr_is_not_browser() {
        for v in ["XMLHttpRequest", "xmlhttprequest", " XMLHTTPREQUEST "] {
            let h = headers(&[("x-requested-with", v), ("accept", "text/html")]);
            assert!(!is_browser(&h), "{v:?}");
        }
        assert!(is_browser(&headers(&[(
            "x-requested-with",
            "com.example.app"
        )])));
    }

    #[test]
    fn non_utf8_header_values_do_not_panic() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_bytes(b"text/html\xff").unwrap());
        assert!(!is_browser(&h));
        h.insert(ACCEPT, HeaderValue::from_bytes(b"\xfe, text/html").unwrap());
        assert!(is_browser(&h));
    }

    #[test]
    fn preflight_needs_options_origin_and_request_method() {
        let cors = headers(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(is_preflight("OPTIONS", &cors));
        assert!(is_preflight("options", &cors));
        assert!(!is_preflight("GET", &cors));
        assert!(!is_preflight(
            "OPTIONS",
            &headers(&[("origin", "https://a.example.com")])
        ));
        assert!(!is_preflight(
            "OPTIONS",
            &headers(&[("access-control-request-method", "POST")])
        ));
    }
}
