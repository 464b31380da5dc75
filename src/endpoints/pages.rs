//! The small answers authgate gives itself: redirects and error pages. Every
//! one carries `Cache-Control: no-store` (see `Reply::new`).

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use crate::authz::{Outcome, Reply};

fn page(status: StatusCode, outcome: Outcome, title: &str, message: &str) -> Reply {
    let mut r = Reply::new(status, outcome);
    r.headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ));
    r.body = Bytes::from(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\
         <h1>{code} {title}</h1><p>{msg}</p></body></html>\n",
        code = status.as_u16(),
        title = html_escape::encode_text(title),
        msg = html_escape::encode_text(message),
    ));
    r
}

/// A 302 to `location`.
pub fn redirect(location: &str, outcome: Outcome) -> Reply {
    let mut r = Reply::new(StatusCode::FOUND, outcome);
    match HeaderValue::from_str(location) {
        Ok(v) => r.headers.push((header::LOCATION, v)),
        // Validated targets are always valid header values; be safe anyway.
        Err(_) => r
            .headers
            .push((header::LOCATION, HeaderValue::from_static("/"))),
    }
    r
}

/// 403: signed in, but not allowed by `authorization`.
pub fn forbidden() -> Reply {
    page(
        StatusCode::FORBIDDEN,
        Outcome::Forbidden,
        "Forbidden",
        "You are signed in, but your account is not allowed to access this resource.",
    )
}

/// 401 for a request without valid credentials that gets no login redirect.
pub fn unauthorized() -> Reply {
    page(
        StatusCode::UNAUTHORIZED,
        Outcome::Unauthenticated,
        "Unauthorized",
        "Sign in to access this resource.",
    )
}

/// RFC 6750 3: refused bearer tokens say why in `WWW-Authenticate`.
pub fn bearer_unauthorized(error: &'static str) -> Reply {
    let mut r = unauthorized();
    let v = format!("Bearer error=\"{error}\"");
    if let Ok(v) = HeaderValue::from_str(&v) {
        r.headers.push((header::WWW_AUTHENTICATE, v));
    }
    r
}

/// 502: the IdP did not answer a call this request needed.
pub fn idp_unavailable() -> Reply {
    page(
        StatusCode::BAD_GATEWAY,
        Outcome::Error,
        "Bad Gateway",
        "The identity provider cannot be reached. Try again in a moment.",
    )
}

/// 503: the IdP has not been discovered yet.
pub fn idp_not_ready() -> Reply {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Error,
        "Service Unavailable",
        "The identity provider has not been reached yet. Try again in a moment.",
    )
}

/// 503: the Redis session store did not answer.
pub fn store_unavailable() -> Reply {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        Outcome::Error,
        "Service Unavailable",
        "The session store cannot be reached. Try again in a moment.",
    )
}

/// 400 with an HTML page saying what was wrong.
pub fn bad_request(message: &str) -> Reply {
    page(
        StatusCode::BAD_REQUEST,
        Outcome::Unauthenticated,
        "Bad Request",
        message,
    )
}

/// A failed sign-in (`status` 4xx/5xx) as an HTML page; never creates a session.
pub fn login_failed(status: StatusCode, message: &str) -> Reply {
    let outcome = if status == StatusCode::FORBIDDEN {
        Outcome::Forbidden
    } else if status.is_server_error() {
        Outcome::Error
    } else {
        Outcome::Unauthenticated
    };
    page(status, outcome, "Sign-in failed", message)
}

/// A plain-text reply.
pub fn text(status: StatusCode, outcome: Outcome, body: &'static str) -> Reply {
    let mut r = Reply::new(status, outcome);
    r.headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    ));
    r.body = Bytes::from_static(body.as_bytes());
    r
}

/// A JSON reply.
pub fn json(status: StatusCode, outcome: Outcome, body: Vec<u8>) -> Reply {
    let mut r = Reply::new(status, outcome);
    r.headers.push((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    r.body = Bytes::from(body);
    r
}
