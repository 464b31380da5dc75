//! The small answers authgate gives itself: redirects and error pages. Every
//! one carries `Cache-Control: no-store`, and every 401 a `WWW-Authenticate:
//! Bearer realm="authgate"` challenge (see `Reply::new`).

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

/// 403: signed in, but not allowed by `authorization`. The page names who
/// is signed in (`who`: the email of the verified ID token or session) and
/// links to `another_account` (a fresh login with `prompt=login`, see
/// `Gate::forbidden`), so a user signed in with the wrong account is not
/// stuck. Both are HTML-escaped here; callers pass plain text.
pub fn forbidden(who: &str, another_account: &str) -> Reply {
    forbidden_page(who, None, another_account)
}

/// 403 from `policies`: [`forbidden`]'s page, also naming the policy
/// (`policies[].name`) that denied the request.
pub fn forbidden_by_policy(who: &str, policy: &str, another_account: &str) -> Reply {
    forbidden_page(who, Some(policy), another_account)
}

fn forbidden_page(who: &str, policy: Option<&str>, another_account: &str) -> Reply {
    let mut r = page(StatusCode::FORBIDDEN, Outcome::Forbidden, "Forbidden", "");
    let who = if who.is_empty() { "an account" } else { who };
    let by = match policy {
        Some(p) => format!(
            " by policy <strong id=\"policy\">{}</strong>",
            html_escape::encode_text(p)
        ),
        None => String::new(),
    };
    r.body = Bytes::from(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>403 Forbidden</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\">\
         <h1>403 Forbidden</h1>\
         <p>You are signed in as <strong id=\"signed-in-as\">{who}</strong>, \
         but this account is not allowed to access this resource{by}.</p>\
         <p><a id=\"another-account\" href=\"{href}\">Sign in with another account</a></p>\
         </body></html>\n",
        who = html_escape::encode_text(who),
        href = html_escape::encode_double_quoted_attribute(another_account),
    ));
    r
}

// === 401 and its challenge ===

/// The `realm` of every `WWW-Authenticate` challenge authgate sends
/// (RFC 9110 §11.6.1): one protection space, whatever the host or listener.
pub const REALM: &str = "authgate";

/// `Bearer realm="authgate"`: [`REALM`] spelt into a static header value.
const PLAIN_CHALLENGE: &str = "Bearer realm=\"authgate\"";

/// The `WWW-Authenticate` value of a 401 (RFC 9110 §15.5.2: every 401 has
/// one; RFC 6750 §3: the `Bearer` scheme). `bearer_error` is `None` when no
/// token authgate verifies was presented (none, or an opaque non-JWT token:
/// plain `Bearer realm="authgate"`), else the RFC 6750 §3.1 code of a
/// refused JWT (`Bearer realm="authgate", error="invalid_token"`). Never
/// fails: an unusable code falls back to the plain challenge.
pub fn challenge(bearer_error: Option<&'static str>) -> HeaderValue {
    let plain = HeaderValue::from_static(PLAIN_CHALLENGE);
    match bearer_error {
        None => plain,
        Some(e) => {
            HeaderValue::from_str(&format!("{PLAIN_CHALLENGE}, error=\"{e}\"")).unwrap_or(plain)
        }
    }
}

/// Replaces the reply's challenge with [`challenge`]`(bearer_error)`: a 401
/// carries exactly one `WWW-Authenticate` (`Reply::new` adds the plain one).
pub fn set_challenge(reply: &mut Reply, bearer_error: Option<&'static str>) {
    reply
        .headers
        .retain(|(name, _)| name != header::WWW_AUTHENTICATE);
    reply
        .headers
        .push((header::WWW_AUTHENTICATE, challenge(bearer_error)));
}

/// 401 for a request without valid credentials that gets no login redirect,
/// with the plain `Bearer realm="authgate"` challenge.
pub fn unauthorized() -> Reply {
    page(
        StatusCode::UNAUTHORIZED,
        Outcome::Unauthenticated,
        "Unauthorized",
        "Sign in to access this resource.",
    )
}

/// 401 for a refused bearer JWT: RFC 6750 §3 says why in
/// `WWW-Authenticate` (`error="invalid_token"`).
pub fn bearer_unauthorized(error: &'static str) -> Reply {
    let mut r = unauthorized();
    set_challenge(&mut r, Some(error));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn challenges(r: &Reply) -> Vec<&str> {
        r.headers
            .iter()
            .filter(|(n, _)| n == header::WWW_AUTHENTICATE)
            .map(|(_, v)| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_plain_challenge_names_the_realm() {
        assert_eq!(PLAIN_CHALLENGE, format!("Bearer realm=\"{REALM}\""));
    }

    #[test]
    fn every_401_carries_exactly_one_bearer_challenge() {
        let plain = [r#"Bearer realm="authgate""#];
        let refused = [r#"Bearer realm="authgate", error="invalid_token""#];
        assert_eq!(challenges(&unauthorized()), plain);
        assert_eq!(challenges(&bearer_unauthorized("invalid_token")), refused);
        let json401 = json(StatusCode::UNAUTHORIZED, Outcome::Unauthenticated, vec![]);
        assert_eq!(challenges(&json401), plain);
        let text401 = text(StatusCode::UNAUTHORIZED, Outcome::Unauthenticated, "");
        assert_eq!(challenges(&text401), plain);
        let failed = login_failed(StatusCode::UNAUTHORIZED, "x");
        assert_eq!(challenges(&failed), plain);
        let mut r = unauthorized();
        set_challenge(&mut r, Some("invalid_token"));
        set_challenge(&mut r, None);
        assert_eq!(challenges(&r), plain);
    }

    #[test]
    fn other_statuses_carry_no_challenge() {
        assert!(challenges(&redirect("/", Outcome::Unauthenticated)).is_empty());
        assert!(challenges(&bad_request("x")).is_empty());
        assert!(challenges(&login_failed(StatusCode::FORBIDDEN, "x")).is_empty());
    }
}
