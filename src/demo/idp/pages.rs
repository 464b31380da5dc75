//! The provider's responses: plain text, JSON with no-store caching, HTML
//! pages under the "not for production" banner, and redirects.

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, PRAGMA};
use http::{Response, StatusCode};
use serde_json::Value;
use url::Url;

/// RFC 9110 §15.5.2: every 401 carries a `WWW-Authenticate` challenge. The
/// challenge for each of the provider's 401s, all in the realm
/// `authgate-demo` (RFC 9110 §11.5):
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Challenge {
    /// The token endpoint's `invalid_client` (RFC 6749 §5.2): `Basic`, the
    /// one header scheme it takes (client_secret_basic), also when the
    /// client tried client_secret_post or nothing, so it learns the scheme.
    ClientBasic,
    /// Userinfo without a bearer credential (RFC 6750 §3, §3.1: no error
    /// code when the request carried no authentication).
    Bearer,
    /// Userinfo with a bearer token it refuses (RFC 6750 §3.1).
    BearerInvalidToken,
    /// The login form re-shown after a wrong password. HTML form logins
    /// have no registered scheme, and `Basic` would make the browser put
    /// its own password dialog over the form, so the challenge names the
    /// form; browsers ignore schemes they do not know and show the page.
    LoginForm,
}

impl Challenge {
    /// The `WWW-Authenticate` value.
    pub(super) fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Challenge::ClientBasic => "Basic realm=\"authgate-demo\", charset=\"UTF-8\"",
            Challenge::Bearer => "Bearer realm=\"authgate-demo\"",
            Challenge::BearerInvalidToken => {
                "Bearer realm=\"authgate-demo\", error=\"invalid_token\""
            }
            Challenge::LoginForm => "FormBased realm=\"authgate-demo\"",
        })
    }

    /// Puts the challenge on `resp` (a 401).
    pub(super) fn apply(self, mut resp: Response<Vec<u8>>) -> Response<Vec<u8>> {
        resp.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, self.header_value());
        resp
    }
}

fn with_headers(
    status: StatusCode,
    body: Vec<u8>,
    headers: &[(HeaderName, &'static str)],
) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    for (name, value) in headers {
        resp.headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
    resp
}

/// A `text/plain` answer of one line.
pub(super) fn text_response(status: StatusCode, text: &str) -> Response<Vec<u8>> {
    with_headers(
        status,
        format!("{text}\n").into_bytes(),
        &[(CONTENT_TYPE, "text/plain; charset=utf-8")],
    )
}

/// 404 for any path the provider does not serve.
pub(super) fn not_found() -> Response<Vec<u8>> {
    text_response(StatusCode::NOT_FOUND, "not found")
}

/// JSON with the no-store caching RFC 6749 5.1 requires of token responses.
pub(super) fn json_response(status: StatusCode, v: &Value) -> Response<Vec<u8>> {
    with_headers(
        status,
        serde_json::to_vec(v).unwrap_or_default(),
        &[
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "no-store"),
            (PRAGMA, "no-cache"),
        ],
    )
}

const PAGE_STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}\
.banner{background:#b00020;color:#fff;padding:.6rem 1rem;font-weight:600;text-align:center}\
main{max-width:22rem;margin:3rem auto;background:#fff;padding:1.5rem 2rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4rem;margin-top:0}\
label{display:block;margin:.8rem 0}input{display:block;width:100%;box-sizing:border-box;\
padding:.45rem;margin-top:.25rem;font-size:1rem}button{margin-top:.6rem;padding:.5rem 1.2rem;\
font-size:1rem}.error{color:#b00020;font-weight:600}.hint{color:#666;font-size:.85rem}\
code{background:#f1f1f1;padding:0 .2rem}";

/// A page with the banner; CSP forbids scripts and framing (clickjacking the
/// login form). No `form-action`: browsers apply it to the redirect after POST.
pub(super) fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Vec<u8>> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{PAGE_STYLE}</style></head>\n<body>\
<div class=\"banner\">development identity provider — not for production</div>\n\
<main>\n{body}</main>\n</body></html>\n",
        html_escape::encode_safe(title)
    );
    with_headers(
        status,
        html.into_bytes(),
        &[
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (
                http::header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (http::header::X_FRAME_OPTIONS, "DENY"),
            (http::header::REFERRER_POLICY, "no-referrer"),
        ],
    )
}

/// A 400 page for a request that cannot go back to the client.
pub(super) fn bad_request_page(message: &str) -> Response<Vec<u8>> {
    html_page(
        StatusCode::BAD_REQUEST,
        "Bad request - authgate demo IdP",
        &format!(
            "<h1>Bad request</h1>\n<p class=\"error\">{}</p>\n",
            html_escape::encode_safe(message)
        ),
    )
}

/// 302 to `base` with `pairs` appended to its query.
pub(super) fn redirect_with(base: &str, pairs: &[(&str, &str)]) -> Response<Vec<u8>> {
    let Ok(mut url) = Url::parse(base) else {
        return bad_request_page("Invalid redirect target.");
    };
    if !pairs.is_empty() {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return bad_request_page("Invalid redirect target.");
    };
    let mut resp = with_headers(
        StatusCode::FOUND,
        Vec::new(),
        &[(CACHE_CONTROL, "no-store")],
    );
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// An RFC 6749 4.1.2.1 error redirect to the client, with its `state`.
pub(super) fn error_redirect(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> Response<Vec<u8>> {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    redirect_with(redirect_uri, &pairs)
}
