//! The token endpoint (RFC 6749 3.2): client authentication, the
//! authorization-code grant with PKCE, the refresh grant with rotation, and
//! the grants kept between the calls.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{HeaderMap, AUTHORIZATION};
use http::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::pages::{json_response, Challenge};
use super::users::User;
use super::{parse_params, DemoClient, DemoIdp, Params};

/// How long an unused refresh token stays valid.
const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
/// The `typ` of access tokens (RFC 9068 2.1), so an ID token is never one.
pub(super) const ACCESS_TOKEN_TYP: &str = "at+jwt";

// === grants ===

/// What an authorization code stands for until it is redeemed.
pub(super) struct CodeGrant {
    pub(super) client_id: String,
    pub(super) redirect_uri: String,
    pub(super) user: &'static User,
    pub(super) nonce: Option<String>,
    pub(super) code_challenge: Option<String>,
    pub(super) scope: String,
    pub(super) sid: String,
    pub(super) auth_time: u64,
    pub(super) expires: Instant,
}

/// What a refresh token stands for until it is spent.
struct RefreshGrant {
    client_id: String,
    user: &'static User,
    scope: String,
    sid: String,
    auth_time: u64,
    expires: Instant,
}

/// The outstanding codes and refresh tokens, by their value.
#[derive(Default)]
pub(super) struct Grants {
    pub(super) codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshGrant>,
}

impl Grants {
    /// Drops every expired grant.
    pub(super) fn prune(&mut self, now: Instant) {
        self.codes.retain(|_, g| g.expires > now);
        self.refresh.retain(|_, g| g.expires > now);
    }
}

// === errors of the token endpoint (RFC 6749 5.2) ===

/// The token endpoint's error codes (RFC 6749 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    #[error("invalid_request")]
    InvalidRequest,
    #[error("invalid_client")]
    InvalidClient,
    #[error("invalid_grant")]
    InvalidGrant,
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    #[error("server_error")]
    ServerError,
}

impl TokenError {
    fn status(self) -> StatusCode {
        match self {
            TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
            TokenError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl DemoIdp {
    /// `POST /token`: authenticates the client, then runs its grant.
    pub(super) fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response<Vec<u8>> {
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        let result = parse_params(body)
            .map_err(|_| TokenError::InvalidRequest)
            .and_then(|p| {
                let client = self.authenticate_client(headers, &p)?;
                match p.get("grant_type").map(String::as_str) {
                    Some("authorization_code") => self.grant_code(client, &p),
                    Some("refresh_token") => self.grant_refresh(client, &p),
                    Some(_) => Err(TokenError::UnsupportedGrantType),
                    None => Err(TokenError::InvalidRequest),
                }
            });
        match result {
            Ok(v) => json_response(StatusCode::OK, &v),
            Err(e) => token_error_response(e),
        }
    }

    /// Client authentication by exactly one of client_secret_basic or
    /// client_secret_post (RFC 6749 2.3.1 forbids using two methods).
    fn authenticate_client(
        &self,
        headers: &HeaderMap,
        p: &Params,
    ) -> Result<&DemoClient, TokenError> {
        let auth = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let (id, secret) = match auth {
            Some(v) if v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic ") => {
                if p.contains_key("client_secret") {
                    return Err(TokenError::InvalidRequest);
                }
                let (id, secret) = parse_basic(&v[6..]).ok_or(TokenError::InvalidClient)?;
                if p.get("client_id").is_some_and(|body_id| *body_id != id) {
                    return Err(TokenError::InvalidRequest);
                }
                (id, secret)
            }
            Some(_) => return Err(TokenError::InvalidClient),
            None => match (p.get("client_id"), p.get("client_secret")) {
                (Some(id), Some(secret)) => (id.clone(), secret.clone()),
                _ => return Err(TokenError::InvalidClient),
            },
        };
        let client = self.client(&id).ok_or(TokenError::InvalidClient)?;
        if bool::from(client.client_secret.as_bytes().ct_eq(secret.as_bytes())) {
            Ok(client)
        } else {
            Err(TokenError::InvalidClient)
        }
    }

    fn grant_code(&self, client: &DemoClient, p: &Params) -> Result<Value, TokenError> {
        let code = p.get("code").ok_or(TokenError::InvalidRequest)?;
        let redirect_uri = p.get("redirect_uri").ok_or(TokenError::InvalidRequest)?;
        let now = Instant::now();
        // Removed before any check: a code is single-use even when the attempt fails.
        let grant = {
            let mut grants = self.inner.grants.lock();
            let g = grants.codes.remove(code.as_str());
            grants.prune(now);
            g
        }
        .ok_or(TokenError::InvalidGrant)?;
        if grant.expires <= now
            || grant.client_id != client.client_id
            || grant.redirect_uri != *redirect_uri
        {
            return Err(TokenError::InvalidGrant);
        }
        match (&grant.code_challenge, p.get("code_verifier")) {
            (None, None) => {}
            (Some(challenge), Some(verifier)) if pkce_s256_matches(verifier, challenge) => {}
            // A verifier without a challenge is refused too (RFC 9700 2.1.1).
            _ => return Err(TokenError::InvalidGrant),
        }
        self.issue(
            client,
            grant.user,
            &grant.scope,
            &grant.sid,
            grant.auth_time,
            grant.nonce.as_deref(),
        )
    }

    fn grant_refresh(&self, client: &DemoClient, p: &Params) -> Result<Value, TokenError> {
        let token = p.get("refresh_token").ok_or(TokenError::InvalidRequest)?;
        let now = Instant::now();
        // Rotation: the presented refresh token is spent whatever happens next.
        let grant = {
            let mut grants = self.inner.grants.lock();
            let g = grants.refresh.remove(token.as_str());
            grants.prune(now);
            g
        }
        .ok_or(TokenError::InvalidGrant)?;
        if grant.expires <= now || grant.client_id != client.client_id {
            return Err(TokenError::InvalidGrant);
        }
        self.issue(
            client,
            grant.user,
            &grant.scope,
            &grant.sid,
            grant.auth_time,
            None,
        )
    }

    /// Mints access token, ID token and a new refresh token.
    fn issue(
        &self,
        client: &DemoClient,
        user: &'static User,
        scope: &str,
        sid: &str,
        auth_time: u64,
        nonce: Option<&str>,
    ) -> Result<Value, TokenError> {
        let iat = crate::clock::unix_now();
        let ttl = self.ttl_secs();
        let mut common = serde_json::Map::new();
        user.profile_claims(&mut common);
        common.insert("iss".into(), json!(self.inner.issuer));
        common.insert("aud".into(), json!(client.client_id));
        common.insert("iat".into(), json!(iat));
        common.insert("exp".into(), json!(iat + ttl));
        common.insert("sid".into(), json!(sid));

        let mut id_claims = common.clone();
        id_claims.insert("auth_time".into(), json!(auth_time));
        if let Some(n) = nonce {
            id_claims.insert("nonce".into(), json!(n));
        }
        let mut at_claims = common;
        at_claims.insert("client_id".into(), json!(client.client_id));
        at_claims.insert("scope".into(), json!(scope));
        at_claims.insert("jti".into(), json!(crate::domain::random::token(16)));

        let signer = &self.inner.signer;
        let id_token = signer.sign("JWT", &Value::Object(id_claims))?;
        let access_token = signer.sign(ACCESS_TOKEN_TYP, &Value::Object(at_claims))?;
        let refresh_token = crate::domain::random::token(32);
        {
            let now = Instant::now();
            let mut grants = self.inner.grants.lock();
            grants.refresh.insert(
                refresh_token.clone(),
                RefreshGrant {
                    client_id: client.client_id.clone(),
                    user,
                    scope: scope.to_string(),
                    sid: sid.to_string(),
                    auth_time,
                    expires: now + REFRESH_TTL,
                },
            );
        }
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "id_token": id_token,
            "scope": scope,
        }))
    }
}

/// RFC 7636 4.6: BASE64URL(SHA256(verifier)) == challenge, verifier 43..=128
/// unreserved characters.
pub(super) fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// Decodes `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 2.3.1).
pub(super) fn parse_basic(encoded: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(encoded.trim()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// An RFC 6749 §5.2 error answer. Its one 401, `invalid_client`, carries
/// the `Basic` challenge whichever way the client tried (RFC 6749 §5.2
/// requires it after a failed `Authorization: Basic`; RFC 9110 §15.5.2
/// requires a challenge on every 401).
fn token_error_response(e: TokenError) -> Response<Vec<u8>> {
    let resp = json_response(e.status(), &json!({"error": e.to_string()}));
    if e.status() == StatusCode::UNAUTHORIZED {
        return Challenge::ClientBasic.apply(resp);
    }
    resp
}
