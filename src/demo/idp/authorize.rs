//! The authorization endpoint (RFC 6749 4.1.1, OIDC Core 3.1.2): request
//! validation, the login form and issuing the authorization code.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{Response, StatusCode};
use url::Url;

use super::pages::{bad_request_page, error_redirect, html_page, redirect_with, Challenge};
use super::token::CodeGrant;
use super::users::check_password;
use super::{is_loopback_http, DemoClient, DemoIdp, Params};

/// Authorization codes are short-lived (RFC 6749 4.1.2 recommends <= 10 min).
const CODE_TTL: Duration = Duration::from_secs(60);

/// A validated authorization request, carried through the login form.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
}

impl DemoIdp {
    /// Validates an authorization request. Problems with the client or the
    /// redirect URI are shown to the user, never redirected (an unregistered
    /// redirect_uri would make this an open redirector); others go back to the
    /// client as RFC 6749 4.1.2.1 error redirects.
    fn validate_authorize(&self, p: &Params) -> Result<AuthRequest, Box<Response<Vec<u8>>>> {
        let client_id = p.get("client_id").map(String::as_str).unwrap_or("");
        let Some(client) = self.client(client_id) else {
            return Err(Box::new(bad_request_page("Unknown or missing client_id.")));
        };
        let redirect_uri = p.get("redirect_uri").map(String::as_str).unwrap_or("");
        if !redirect_uri_allowed(client, redirect_uri) {
            return Err(Box::new(bad_request_page(
                "The redirect_uri is missing or not registered for this client.",
            )));
        }
        let state = p.get("state").cloned();
        let fail = |error: &str, description: &str| {
            Box::new(error_redirect(
                redirect_uri,
                error,
                description,
                state.as_deref(),
            ))
        };
        if p.get("response_type").map(String::as_str) != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let scope = p.get("scope").cloned().unwrap_or_default();
        if !scope.split(' ').any(|s| s == "openid") {
            return Err(fail("invalid_scope", "the openid scope is required"));
        }
        let challenge = p.get("code_challenge").cloned();
        match (
            challenge.as_deref(),
            p.get("code_challenge_method").map(String::as_str),
        ) {
            (None, None) => {}
            (Some(c), Some("S256")) if is_s256_challenge(c) => {}
            (Some(_), Some("S256")) => {
                return Err(fail("invalid_request", "malformed code_challenge"));
            }
            // Without a method RFC 7636 means "plain", which this provider refuses.
            _ => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method must be S256 with a code_challenge",
                ));
            }
        }
        Ok(AuthRequest {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scope,
            state,
            nonce: p.get("nonce").cloned(),
            code_challenge: challenge,
        })
    }

    /// `GET /authorize`: the login form for a valid request.
    pub(super) fn authorize_get(&self, p: &Params) -> Response<Vec<u8>> {
        match self.validate_authorize(p) {
            Ok(req) => self.login_page(StatusCode::OK, &req, "", None),
            Err(resp) => *resp,
        }
    }

    /// `POST /authorize` (and `/login`): checks the password; on success a
    /// single-use code goes back to the client with its `state`.
    pub(super) fn authorize_post(&self, p: &Params) -> Response<Vec<u8>> {
        let req = match self.validate_authorize(p) {
            Ok(req) => req,
            Err(resp) => return *resp,
        };
        let username = p.get("username").map(String::as_str).unwrap_or("");
        let password = p.get("password").map(String::as_str).unwrap_or("");
        let Some(user) = check_password(username, password) else {
            return self.login_page(
                StatusCode::UNAUTHORIZED,
                &req,
                username,
                Some("Invalid username or password."),
            );
        };
        let code = crate::domain::random::token(32);
        let now = Instant::now();
        {
            let mut grants = self.inner.grants.lock();
            grants.prune(now);
            grants.codes.insert(
                code.clone(),
                CodeGrant {
                    client_id: req.client_id,
                    redirect_uri: req.redirect_uri.clone(),
                    user,
                    nonce: req.nonce,
                    code_challenge: req.code_challenge,
                    scope: req.scope,
                    sid: crate::domain::random::token(16),
                    auth_time: crate::clock::unix_now(),
                    expires: now + CODE_TTL,
                },
            );
        }
        let mut pairs = vec![("code", code.as_str())];
        if let Some(s) = req.state.as_deref() {
            pairs.push(("state", s));
        }
        redirect_with(&req.redirect_uri, &pairs)
    }

    fn login_page(
        &self,
        status: StatusCode,
        req: &AuthRequest,
        username: &str,
        error: Option<&str>,
    ) -> Response<Vec<u8>> {
        let mut hidden = String::new();
        let fields = [
            ("client_id", Some(req.client_id.as_str())),
            ("redirect_uri", Some(req.redirect_uri.as_str())),
            ("response_type", Some("code")),
            ("scope", Some(req.scope.as_str())),
            ("state", req.state.as_deref()),
            ("nonce", req.nonce.as_deref()),
            ("code_challenge", req.code_challenge.as_deref()),
            (
                "code_challenge_method",
                req.code_challenge.as_ref().map(|_| "S256"),
            ),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                hidden.push_str(&format!(
                    "<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n",
                    html_escape::encode_double_quoted_attribute(v)
                ));
            }
        }
        let error_html = error
            .map(|e| {
                format!(
                    "<p class=\"error\" role=\"alert\">{}</p>\n",
                    html_escape::encode_safe(e)
                )
            })
            .unwrap_or_default();
        let body = format!(
            "<h1>Sign in</h1>\n{error_html}\
<form method=\"post\" action=\"{action}\">\n{hidden}\
<label>Username <input name=\"username\" autocomplete=\"username\" value=\"{user}\" autofocus required></label>\n\
<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n\
<button type=\"submit\">Sign in</button>\n</form>\n\
<p class=\"hint\">Demo users: <code>alice</code> / <code>alice</code> (groups admins, devs) \
and <code>bob</code> / <code>bob</code> (group users).</p>\n\
<p class=\"hint\">Signing in to <code>{client}</code>.</p>\n",
            action = html_escape::encode_double_quoted_attribute(&format!(
                "{}/authorize",
                self.inner.base_path
            )),
            user = html_escape::encode_double_quoted_attribute(username),
            client = html_escape::encode_safe(&req.client_id),
        );
        let page = html_page(status, "Sign in - authgate demo IdP", &body);
        if status == StatusCode::UNAUTHORIZED {
            return Challenge::LoginForm.apply(page);
        }
        page
    }
}

/// Exact match against the registered list, or loopback http when none is registered.
fn redirect_uri_allowed(client: &DemoClient, redirect_uri: &str) -> bool {
    let Ok(parsed) = Url::parse(redirect_uri) else {
        return false;
    };
    if parsed.fragment().is_some() {
        return false;
    }
    if client.redirect_uris.is_empty() {
        is_loopback_http(&parsed) && parsed.username().is_empty() && parsed.password().is_none()
    } else {
        client.redirect_uris.iter().any(|r| r == redirect_uri)
    }
}

/// An S256 challenge is the unpadded base64url of a SHA-256 digest: 43 chars.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|d| d.len() == 32)
}
