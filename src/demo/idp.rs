//! A small, spec-following OpenID Connect provider for `authgate demo` and for
//! authgate's own integration tests.
//!
//! Authorization code flow only (RFC 6749 + OIDC Core), PKCE S256 (RFC 7636),
//! client_secret_basic / client_secret_post, refresh-token rotation,
//! RP-initiated logout. Users and passwords are fixed and public, state lives in
//! memory and the RS256 key is generated at start: development use only.
//!
//! Request handling is the synchronous [`DemoIdp::handle`]; the Pingora
//! [`ServeHttp`] impl only reads the body and calls it, so tests drive `handle`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION,
    PRAGMA, WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parking_lot::Mutex;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use rand::RngCore as _;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use url::Url;

/// Access and ID token lifetime unless [`DemoIdp::with_token_ttl`] says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Authorization codes are short-lived (RFC 6749 4.1.2 recommends <= 10 min).
const CODE_TTL: Duration = Duration::from_secs(60);
const REFRESH_TTL: Duration = Duration::from_secs(24 * 3600);
/// Forms and token requests are tiny; anything bigger is not a real client.
const MAX_BODY: usize = 64 * 1024;
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A registered relying party.
#[derive(Debug, Clone)]
pub struct DemoClient {
    pub client_id: String,
    pub client_secret: String,
    /// Exact-match redirect URIs. Empty: any `http://127.0.0.1`, `http://localhost`
    /// or `http://[::1]` URI (the demo proxy's port is only known at run time).
    pub redirect_uris: Vec<String>,
}

/// Why the provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("issuer URL must be http(s) with a host and no query or fragment: {0}")]
    BadIssuer(String),
    #[error("generating the RSA signing key failed: {0}")]
    KeyGeneration(#[from] rsa::Error),
    #[error("encoding the RSA signing key failed: {0}")]
    KeyEncoding(String),
}

// === users ===

/// One fixed account. `carol` exists for tests of the unverified-email refusal
/// and is deliberately not advertised on the login page.
struct User {
    username: &'static str,
    password: &'static str,
    sub: &'static str,
    name: &'static str,
    email: &'static str,
    email_verified: bool,
    groups: &'static [&'static str],
}

const USERS: &[User] = &[
    User {
        username: "alice",
        password: "alice",
        sub: "demo-user-alice",
        name: "Alice Example",
        email: "alice@example.com",
        email_verified: true,
        groups: &["admins", "devs"],
    },
    User {
        username: "bob",
        password: "bob",
        sub: "demo-user-bob",
        name: "Bob Example",
        email: "bob@example.com",
        email_verified: true,
        groups: &["users"],
    },
    User {
        username: "carol",
        password: "carol",
        sub: "demo-user-carol",
        name: "Carol Example",
        email: "carol@example.com",
        email_verified: false,
        groups: &["admins"],
    },
];

fn find_user(username: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.username == username)
}

fn find_user_by_sub(sub: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.sub == sub)
}

impl User {
    /// Claims shared by the ID token, the access token and userinfo.
    fn profile_claims(&self, into: &mut serde_json::Map<String, Value>) {
        into.insert("sub".into(), json!(self.sub));
        into.insert("email".into(), json!(self.email));
        into.insert("email_verified".into(), json!(self.email_verified));
        into.insert("preferred_username".into(), json!(self.username));
        into.insert("name".into(), json!(self.name));
        into.insert("groups".into(), json!(self.groups));
    }
}

// === grants ===

struct CodeGrant {
    client_id: String,
    redirect_uri: String,
    user: &'static User,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
    sid: String,
    auth_time: u64,
    expires: Instant,
}

struct RefreshGrant {
    client_id: String,
    user: &'static User,
    scope: String,
    sid: String,
    auth_time: u64,
    expires: Instant,
}

#[derive(Default)]
struct Grants {
    codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshGrant>,
}

impl Grants {
    fn prune(&mut self, now: Instant) {
        self.codes.retain(|_, g| g.expires > now);
        self.refresh.retain(|_, g| g.expires > now);
    }
}

// === errors of the token endpoint (RFC 6749 5.2) ===

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum TokenError {
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

// === signing key ===

struct Signer {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// base64url modulus and exponent for the JWKS.
    n: String,
    e: String,
}

impl Signer {
    fn new(key: &RsaPrivateKey) -> Result<Signer, IdpError> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| IdpError::KeyEncoding(e.to_string()))?;
        let n = key.n().to_bytes_be();
        let e = key.e().to_bytes_be();
        Ok(Signer {
            kid: random_token(12),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding: DecodingKey::from_rsa_raw_components(&n, &e),
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    }

    fn sign(&self, typ: &str, claims: &Value) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| TokenError::ServerError)
    }
}

// === impl DemoIdp ===

struct Inner {
    /// `iss` value: the issuer URL without a trailing slash.
    issuer: String,
    /// Path prefix of every endpoint (issuer path without trailing slash).
    base_path: String,
    clients: Vec<DemoClient>,
    signer: Signer,
    token_ttl_secs: AtomicU64,
    grants: Mutex<Grants>,
    token_requests: AtomicU64,
}

/// The development OIDC provider. Cheap to clone: clones share state, so a test
/// can keep one to read [`DemoIdp::token_requests`] after handing the other to
/// a Pingora service.
#[derive(Clone)]
pub struct DemoIdp {
    inner: Arc<Inner>,
}

type Params = HashMap<String, String>;

impl DemoIdp {
    /// Builds the provider with a fresh 2048-bit RSA key (slow in debug builds).
    pub fn new(issuer: Url, clients: Vec<DemoClient>) -> anyhow::Result<DemoIdp> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(IdpError::from)?;
        Self::new_with_key(issuer, clients, key)
    }

    /// Builds the provider with a given key, so tests can share one key.
    pub fn new_with_key(
        issuer: Url,
        clients: Vec<DemoClient>,
        key: RsaPrivateKey,
    ) -> anyhow::Result<DemoIdp> {
        if !matches!(issuer.scheme(), "http" | "https")
            || issuer.host().is_none()
            || issuer.query().is_some()
            || issuer.fragment().is_some()
        {
            return Err(IdpError::BadIssuer(issuer.to_string()).into());
        }
        let issuer_str = issuer.as_str().trim_end_matches('/').to_string();
        let base_path = issuer.path().trim_end_matches('/').to_string();
        Ok(DemoIdp {
            inner: Arc::new(Inner {
                issuer: issuer_str,
                base_path,
                clients,
                signer: Signer::new(&key)?,
                token_ttl_secs: AtomicU64::new(DEFAULT_TOKEN_TTL.as_secs()),
                grants: Mutex::new(Grants::default()),
                token_requests: AtomicU64::new(0),
            }),
        })
    }

    /// Sets the access/ID token lifetime (whole seconds, at least 1), e.g. short
    /// lifetimes for refresh tests. Affects clones too.
    pub fn with_token_ttl(self, ttl: Duration) -> DemoIdp {
        self.inner
            .token_ttl_secs
            .store(ttl.as_secs().max(1), Ordering::Relaxed);
        self
    }

    /// How many requests reached the token endpoint (any grant, any outcome).
    pub fn token_requests(&self) -> u64 {
        self.inner.token_requests.load(Ordering::Relaxed)
    }

    /// The `iss` value of the tokens: the issuer URL without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Handles one request. `path_and_query` is the request target as received
    /// (`/authorize?client_id=...`). Never panics on request input.
    pub fn handle(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some(route) = path.strip_prefix(self.inner.base_path.as_str()) else {
            return not_found();
        };
        match (method, route) {
            (&Method::GET, "/.well-known/openid-configuration") => self.discovery(),
            (&Method::GET, "/jwks") => self.jwks(),
            (&Method::GET, "/authorize") => match parse_params(query.as_bytes()) {
                Ok(p) => self.authorize_get(&p),
                Err(dup) => bad_request_page(&format!("Parameter {dup} is repeated.")),
            },
            (&Method::POST, "/authorize" | "/login") => match parse_params(body) {
                Ok(p) => self.authorize_post(&p),
                Err(dup) => bad_request_page(&format!("Parameter {dup} is repeated.")),
            },
            (&Method::POST, "/token") => self.token(headers, body),
            (&Method::GET | &Method::POST, "/userinfo") => self.userinfo(headers),
            (&Method::GET, "/logout") => match parse_params(query.as_bytes()) {
                Ok(p) => self.logout(&p),
                Err(dup) => bad_request_page(&format!("Parameter {dup} is repeated.")),
            },
            (&Method::POST, "/logout") => match parse_params(body) {
                Ok(p) => self.logout(&p),
                Err(dup) => bad_request_page(&format!("Parameter {dup} is repeated.")),
            },
            (
                _,
                "/.well-known/openid-configuration"
                | "/jwks"
                | "/authorize"
                | "/login"
                | "/token"
                | "/userinfo"
                | "/logout",
            ) => {
                let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                resp.headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static("GET, POST"));
                resp
            }
            _ => not_found(),
        }
    }

    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.inner.issuer)
    }

    fn ttl_secs(&self) -> u64 {
        self.inner.token_ttl_secs.load(Ordering::Relaxed)
    }

    fn client(&self, client_id: &str) -> Option<&DemoClient> {
        self.inner.clients.iter().find(|c| c.client_id == client_id)
    }

    // --- discovery ---

    fn discovery(&self) -> Response<Vec<u8>> {
        json_response(
            StatusCode::OK,
            &json!({
                "issuer": self.inner.issuer,
                "authorization_endpoint": self.endpoint("authorize"),
                "token_endpoint": self.endpoint("token"),
                "userinfo_endpoint": self.endpoint("userinfo"),
                "jwks_uri": self.endpoint("jwks"),
                "end_session_endpoint": self.endpoint("logout"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
                "claims_supported": [
                    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                    "email", "email_verified", "preferred_username", "name", "groups"
                ],
            }),
        )
    }

    fn jwks(&self) -> Response<Vec<u8>> {
        let s = &self.inner.signer;
        json_response(
            StatusCode::OK,
            &json!({"keys": [{
                "kty": "RSA", "kid": s.kid, "use": "sig", "alg": "RS256", "n": s.n, "e": s.e
            }]}),
        )
    }

    // --- authorization endpoint ---

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

    fn authorize_get(&self, p: &Params) -> Response<Vec<u8>> {
        match self.validate_authorize(p) {
            Ok(req) => self.login_page(StatusCode::OK, &req, "", None),
            Err(resp) => *resp,
        }
    }

    fn authorize_post(&self, p: &Params) -> Response<Vec<u8>> {
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
        let code = random_token(32);
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
                    sid: random_token(16),
                    auth_time: unix_now(),
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
        html_page(status, "Sign in - authgate demo IdP", &body)
    }

    // --- token endpoint ---

    fn token(&self, headers: &HeaderMap, body: &[u8]) -> Response<Vec<u8>> {
        self.inner.token_requests.fetch_add(1, Ordering::Relaxed);
        let basic = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() >= 6 && v[..6].eq_ignore_ascii_case("basic "));
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
            Err(e) => token_error_response(e, basic),
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
        let iat = unix_now();
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
        at_claims.insert("jti".into(), json!(random_token(16)));

        let signer = &self.inner.signer;
        let id_token = signer.sign("JWT", &Value::Object(id_claims))?;
        let access_token = signer.sign(ACCESS_TOKEN_TYP, &Value::Object(at_claims))?;
        let refresh_token = random_token(32);
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

    // --- userinfo ---

    fn userinfo(&self, headers: &HeaderMap) -> Response<Vec<u8>> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].trim())
            });
        let user = token.and_then(|t| self.verify_access_token(t));
        let Some(user) = user else {
            let mut resp =
                json_response(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            return resp;
        };
        let mut claims = serde_json::Map::new();
        user.profile_claims(&mut claims);
        json_response(StatusCode::OK, &Value::Object(claims))
    }

    /// Accepts only this provider's unexpired access tokens (typ at+jwt), so an
    /// ID token cannot be replayed as a bearer credential here.
    fn verify_access_token(&self, token: &str) -> Option<&'static User> {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[self.inner.issuer.as_str()]);
        v.validate_aud = false;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.inner.signer.decoding, &v).ok()?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return None;
        }
        find_user_by_sub(data.claims.get("sub")?.as_str()?)
    }

    // --- RP-initiated logout ---

    fn logout(&self, p: &Params) -> Response<Vec<u8>> {
        let Some(target) = p.get("post_logout_redirect_uri") else {
            return html_page(
                StatusCode::OK,
                "Signed out - authgate demo IdP",
                "<h1>Signed out</h1>\n<p>You have been signed out of the development identity provider.</p>\n",
            );
        };
        // The client is named by client_id or by the ID token's audience; an
        // expired hint is fine (the session may be long gone), a forged one is not.
        let mut client_id = p.get("client_id").cloned();
        if let Some(hint) = p.get("id_token_hint") {
            let mut v = Validation::new(Algorithm::RS256);
            v.set_issuer(&[self.inner.issuer.as_str()]);
            v.validate_aud = false;
            v.validate_exp = false;
            v.set_required_spec_claims(&["iss", "aud"]);
            let Ok(data) = jsonwebtoken::decode::<Value>(hint, &self.inner.signer.decoding, &v)
            else {
                return bad_request_page("The id_token_hint is not valid.");
            };
            let aud = data
                .claims
                .get("aud")
                .and_then(Value::as_str)
                .map(str::to_string);
            if client_id.is_some() && client_id != aud {
                return bad_request_page("client_id does not match the id_token_hint.");
            }
            client_id = aud;
        }
        let allowed = match client_id.as_deref() {
            Some(id) => self
                .client(id)
                .is_some_and(|c| logout_uri_allowed(c, target)),
            None => self
                .inner
                .clients
                .iter()
                .any(|c| logout_uri_allowed(c, target)),
        };
        if !allowed {
            return bad_request_page("The post_logout_redirect_uri is not registered.");
        }
        match p.get("state") {
            Some(s) => redirect_with(target, &[("state", s.as_str())]),
            None => redirect_with(target, &[]),
        }
    }
}

#[async_trait]
impl ServeHttp for DemoIdp {
    async fn response(&self, http_session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = http_session.req_header();
        let method = req.method.clone();
        let target = req
            .uri
            .path_and_query()
            .map(|pq| pq.as_str().to_string())
            .unwrap_or_else(|| "/".to_string());
        let headers = req.headers.clone();
        let mut body = Vec::new();
        loop {
            match http_session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return text_response(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "request body too large",
                        );
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => {
                    return text_response(StatusCode::BAD_REQUEST, "could not read request body")
                }
            }
        }
        super::with_content_length(self.handle(&method, &target, &headers, &body))
    }
}

/// A validated authorization request, carried through the login form.
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
}

// === request checks ===

/// Parses a form or query string; repeated parameters are an error (RFC 6749 3.1).
fn parse_params(input: &[u8]) -> Result<Params, String> {
    let mut out = Params::new();
    for (k, v) in form_urlencoded::parse(input) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(k.into_owned());
        }
    }
    Ok(out)
}

fn check_password(username: &str, password: &str) -> Option<&'static User> {
    let user = find_user(username)?;
    bool::from(user.password.as_bytes().ct_eq(password.as_bytes())).then_some(user)
}

fn is_loopback_http(uri: &Url) -> bool {
    uri.scheme() == "http"
        && matches!(
            uri.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        )
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

/// Post-logout targets must share an origin with a registered redirect URI.
fn logout_uri_allowed(client: &DemoClient, target: &str) -> bool {
    let Ok(parsed) = Url::parse(target) else {
        return false;
    };
    if parsed.fragment().is_some() || !parsed.username().is_empty() {
        return false;
    }
    if client.redirect_uris.is_empty() {
        return is_loopback_http(&parsed);
    }
    client
        .redirect_uris
        .iter()
        .any(|r| Url::parse(r).is_ok_and(|registered| registered.origin() == parsed.origin()))
}

/// An S256 challenge is the unpadded base64url of a SHA-256 digest: 43 chars.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|d| d.len() == 32)
}

/// RFC 7636 4.6: BASE64URL(SHA256(verifier)) == challenge, verifier 43..=128
/// unreserved characters.
fn pkce_s256_matches(verifier: &str, challenge: &str) -> bool {
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
fn parse_basic(encoded: &str) -> Option<(String, String)> {
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

// === responses ===

fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

fn text_response(status: StatusCode, text: &str) -> Response<Vec<u8>> {
    with_headers(
        status,
        format!("{text}\n").into_bytes(),
        &[(CONTENT_TYPE, "text/plain; charset=utf-8")],
    )
}

fn not_found() -> Response<Vec<u8>> {
    text_response(StatusCode::NOT_FOUND, "not found")
}

/// JSON with the no-store caching RFC 6749 5.1 requires of token responses.
fn json_response(status: StatusCode, v: &Value) -> Response<Vec<u8>> {
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

fn token_error_response(e: TokenError, basic_attempted: bool) -> Response<Vec<u8>> {
    let mut resp = json_response(e.status(), &json!({"error": e.to_string()}));
    if e == TokenError::InvalidClient && basic_attempted {
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"authgate-demo\""),
        );
    }
    resp
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
fn html_page(status: StatusCode, title: &str, body: &str) -> Response<Vec<u8>> {
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

fn bad_request_page(message: &str) -> Response<Vec<u8>> {
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
fn redirect_with(base: &str, pairs: &[(&str, &str)]) -> Response<Vec<u8>> {
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

fn error_redirect(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    const REDIRECT: &str = "http://127.0.0.1:4180/oauth2/callback";
    const SECRET: &str = "s3cret";
    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    /// One key per test binary: RSA generation takes seconds in debug builds.
    fn key() -> RsaPrivateKey {
        static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap())
            .clone()
    }

    fn idp_at(issuer: &str) -> DemoIdp {
        DemoIdp::new_with_key(
            Url::parse(issuer).unwrap(),
            vec![
                DemoClient {
                    client_id: "authgate".into(),
                    client_secret: SECRET.into(),
                    redirect_uris: vec![REDIRECT.into()],
                },
                DemoClient {
                    client_id: "other".into(),
                    client_secret: "other-secret".into(),
                    redirect_uris: vec![],
                },
            ],
            key(),
        )
        .unwrap()
    }

    fn idp() -> DemoIdp {
        idp_at("http://127.0.0.1:5556/")
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish().into_bytes()
    }

    fn get(idp: &DemoIdp, target: &str) -> Response<Vec<u8>> {
        idp.handle(&Method::GET, target, &HeaderMap::new(), b"")
    }

    fn body_str(r: &Response<Vec<u8>>) -> String {
        String::from_utf8(r.body().clone()).unwrap()
    }

    fn body_json(r: &Response<Vec<u8>>) -> Value {
        serde_json::from_slice(r.body()).unwrap()
    }

    fn location(r: &Response<Vec<u8>>) -> Url {
        Url::parse(r.headers()[LOCATION].to_str().unwrap()).unwrap()
    }

    fn query_param(u: &Url, name: &str) -> Option<String> {
        u.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn auth_params<'a>() -> Vec<(&'a str, &'a str)> {
        vec![
            ("client_id", "authgate"),
            ("redirect_uri", REDIRECT),
            ("response_type", "code"),
            ("scope", "openid email profile groups"),
            ("state", "st&ate=1"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
    }

    fn authorize_query(params: &[(&str, &str)]) -> String {
        format!("/authorize?{}", String::from_utf8(form(params)).unwrap())
    }

    fn login_as(idp: &DemoIdp, user: &str, password: &str) -> Response<Vec<u8>> {
        let mut p = auth_params();
        p.push(("username", user));
        p.push(("password", password));
        idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p))
    }

    /// Logs in and returns the code from the callback redirect.
    fn code_for(idp: &DemoIdp, user: &str) -> String {
        let r = login_as(idp, user, user);
        assert_eq!(r.status(), StatusCode::FOUND);
        query_param(&location(&r), "code").unwrap()
    }

    fn basic(id: &str, secret: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&v).unwrap());
        h
    }

    fn token(idp: &DemoIdp, headers: &HeaderMap, params: &[(&str, &str)]) -> Response<Vec<u8>> {
        idp.handle(&Method::POST, "/token", headers, &form(params))
    }

    fn exchange(idp: &DemoIdp, code: &str, verifier: &str) -> Response<Vec<u8>> {
        token(
            idp,
            &basic("authgate", SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
    }

    /// Verifies a JWT the way a relying party does: key from the served JWKS.
    fn verify_with_jwks(idp: &DemoIdp, jwt: &str, aud: &str) -> Value {
        let jwks = body_json(&get(idp, "/jwks"));
        let k = &jwks["keys"][0];
        let header = jsonwebtoken::decode_header(jwt).unwrap();
        assert_eq!(header.kid.as_deref(), k["kid"].as_str());
        let key =
            DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap())
                .unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[aud]);
        v.set_issuer(&["http://127.0.0.1:5556"]);
        jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
    }

    fn error_of(r: &Response<Vec<u8>>) -> String {
        body_json(r)["error"].as_str().unwrap().to_string()
    }

    // --- discovery and keys ---

    #[test]
    fn discovery_lists_endpoints_under_the_issuer_path() {
        let idp = idp_at("http://127.0.0.1:5556/dex/");
        let d = body_json(&get(&idp, "/dex/.well-known/openid-configuration"));
        assert_eq!(d["issuer"], "http://127.0.0.1:5556/dex");
        assert_eq!(
            d["authorization_endpoint"],
            "http://127.0.0.1:5556/dex/authorize"
        );
        assert_eq!(d["token_endpoint"], "http://127.0.0.1:5556/dex/token");
        assert_eq!(d["jwks_uri"], "http://127.0.0.1:5556/dex/jwks");
        assert_eq!(
            d["end_session_endpoint"],
            "http://127.0.0.1:5556/dex/logout"
        );
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["id_token_signing_alg_values_supported"], json!(["RS256"]));
        assert_eq!(
            d["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(get(&idp, "/.well-known/openid-configuration").status(), 404);
        assert_eq!(get(&idp, "/dex/jwks").status(), 200);
    }

    #[test]
    fn jwks_publishes_the_rs256_signing_key() {
        let idp = idp();
        let r = get(&idp, "/jwks");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        let k = &body_json(&r)["keys"][0];
        assert_eq!(k["kty"], "RSA");
        assert_eq!(k["use"], "sig");
        assert_eq!(k["alg"], "RS256");
        assert_eq!(k["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(k["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );
        assert!(!k["kid"].as_str().unwrap().is_empty());
    }

    #[test]
    fn issuer_with_query_is_rejected() {
        let r = DemoIdp::new_with_key(
            Url::parse("http://127.0.0.1:1/?a=b").unwrap(),
            vec![],
            key(),
        );
        assert!(r.is_err());
    }

    // --- authorization endpoint ---

    #[test]
    fn authorize_shows_login_form_carrying_the_request() {
        let idp = idp();
        let r = get(&idp, &authorize_query(&auth_params()));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let b = body_str(&r);
        assert!(b.contains("development identity provider — not for production"));
        assert!(b.contains("name=\"username\""));
        assert!(b.contains("name=\"password\""));
        assert!(b.contains("action=\"/authorize\""));
        assert!(b.contains("name=\"state\" value=\"st&amp;ate=1\""));
        assert!(b.contains(&format!("name=\"code_challenge\" value=\"{CHALLENGE}\"")));
        assert!(b.contains("alice") && b.contains("bob"));
        assert!(!b.contains("carol"), "the test-only user is not advertised");
    }

    #[test]
    fn unknown_client_gets_a_400_page_not_a_redirect() {
        let idp = idp();
        let mut p = auth_params();
        p[0] = ("client_id", "nobody");
        let r = get(&idp, &authorize_query(&p));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(LOCATION).is_none());
    }

    #[test]
    fn unregistered_redirect_uri_gets_a_400_page_not_a_redirect() {
        let idp = idp();
        for bad in [
            "https://evil.example/cb",
            "http://127.0.0.1:4180/oauth2/callback/x",
            "http://127.0.0.1:4180/oauth2/callback#f",
            "",
        ] {
            let mut p = auth_params();
            p[1] = ("redirect_uri", bad);
            let r = get(&idp, &authorize_query(&p));
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(r.headers().get(LOCATION).is_none(), "{bad}");
        }
        // Even after a bad password, the POST path redirects nowhere unregistered.
        let mut p = auth_params();
        p[1] = ("redirect_uri", "https://evil.example/cb");
        p.push(("username", "alice"));
        p.push(("password", "alice"));
        let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn client_without_registered_uris_accepts_only_loopback_http() {
        let idp = idp();
        let mut ok = 0;
        for (uri, allowed) in [
            ("http://127.0.0.1:9999/oauth2/callback", true),
            ("http://localhost:80/cb", true),
            ("https://127.0.0.1/cb", false),
            ("http://127.0.0.1.evil.example/cb", false),
            ("http://user@127.0.0.1/cb", false),
            ("http://10.0.0.1/cb", false),
        ] {
            let mut p = auth_params();
            p[0] = ("client_id", "other");
            p[1] = ("redirect_uri", uri);
            let status = get(&idp, &authorize_query(&p)).status();
            assert_eq!(status == StatusCode::OK, allowed, "{uri}");
            ok += usize::from(allowed);
        }
        assert_eq!(ok, 2);
    }

    #[test]
    fn wrong_response_type_redirects_an_error_with_state() {
        let idp = idp();
        let mut p = auth_params();
        p[2] = ("response_type", "token");
        let r = get(&idp, &authorize_query(&p));
        assert_eq!(r.status(), StatusCode::FOUND);
        let loc = location(&r);
        assert!(loc.as_str().starts_with(REDIRECT));
        assert_eq!(
            query_param(&loc, "error").unwrap(),
            "unsupported_response_type"
        );
        assert_eq!(query_param(&loc, "state").unwrap(), "st&ate=1");
    }

    #[test]
    fn plain_or_missing_pkce_method_and_missing_openid_scope_are_refused() {
        let idp = idp();
        let mut plain = auth_params();
        plain[7] = ("code_challenge_method", "plain");
        let mut no_method = auth_params();
        no_method.pop();
        let mut bad_challenge = auth_params();
        bad_challenge[6] = ("code_challenge", "short");
        for p in [plain, no_method, bad_challenge] {
            let r = get(&idp, &authorize_query(&p));
            assert_eq!(
                query_param(&location(&r), "error").unwrap(),
                "invalid_request"
            );
        }
        let mut no_openid = auth_params();
        no_openid[3] = ("scope", "email");
        let r = get(&idp, &authorize_query(&no_openid));
        assert_eq!(
            query_param(&location(&r), "error").unwrap(),
            "invalid_scope"
        );
    }

    #[test]
    fn repeated_parameters_are_a_bad_request() {
        let idp = idp();
        let mut p = auth_params();
        p.push(("client_id", "other"));
        assert_eq!(
            get(&idp, &authorize_query(&p)).status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn bad_password_reshows_the_form_with_401_and_no_code() {
        let idp = idp();
        for (user, pw) in [("alice", "bob"), ("alice", ""), ("mallory", "mallory")] {
            let r = login_as(&idp, user, pw);
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert!(r.headers().get(LOCATION).is_none());
            let b = body_str(&r);
            assert!(b.contains("Invalid username or password."));
            assert!(b.contains("name=\"password\""));
            assert!(b.contains(&format!("name=\"code_challenge\" value=\"{CHALLENGE}\"")));
        }
        assert!(idp.inner.grants.lock().codes.is_empty());
    }

    #[test]
    fn good_password_redirects_with_code_and_state() {
        let idp = idp();
        let r = login_as(&idp, "alice", "alice");
        assert_eq!(r.status(), StatusCode::FOUND);
        let loc = location(&r);
        assert_eq!(loc.path(), "/oauth2/callback");
        assert!(query_param(&loc, "code").unwrap().len() >= 32);
        assert_eq!(query_param(&loc, "state").unwrap(), "st&ate=1");
        // The /login alias behaves the same.
        let mut p = auth_params();
        p.push(("username", "bob"));
        p.push(("password", "bob"));
        let r = idp.handle(&Method::POST, "/login", &HeaderMap::new(), &form(&p));
        assert_eq!(r.status(), StatusCode::FOUND);
    }

    // --- token endpoint ---

    #[test]
    fn code_exchange_returns_tokens_whose_id_token_verifies_against_jwks() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let r = exchange(&idp, &code, VERIFIER);
        assert_eq!(r.status(), StatusCode::OK, "{}", body_str(&r));
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let t = body_json(&r);
        assert_eq!(t["token_type"], "Bearer");
        assert_eq!(t["expires_in"], DEFAULT_TOKEN_TTL.as_secs());
        assert!(t["refresh_token"].as_str().unwrap().len() >= 32);

        let id = verify_with_jwks(&idp, t["id_token"].as_str().unwrap(), "authgate");
        assert_eq!(id["iss"], "http://127.0.0.1:5556");
        assert_eq!(id["sub"], "demo-user-alice");
        assert_eq!(id["aud"], "authgate");
        assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
        assert_eq!(id["email"], "alice@example.com");
        assert_eq!(id["email_verified"], true);
        assert_eq!(id["preferred_username"], "alice");
        assert_eq!(id["name"], "Alice Example");
        assert_eq!(id["groups"], json!(["admins", "devs"]));
        assert!(id["sid"].is_string());
        assert!(id["auth_time"].as_u64().unwrap() <= id["iat"].as_u64().unwrap());
        assert_eq!(
            id["exp"].as_u64().unwrap() - id["iat"].as_u64().unwrap(),
            DEFAULT_TOKEN_TTL.as_secs()
        );

        let at = verify_with_jwks(&idp, t["access_token"].as_str().unwrap(), "authgate");
        assert_eq!(at["sub"], "demo-user-alice");
        assert_eq!(at["groups"], json!(["admins", "devs"]));
        assert!(at.get("nonce").is_none());
    }

    #[test]
    fn unverified_user_carol_gets_email_verified_false() {
        let idp = idp();
        let code = code_for(&idp, "carol");
        let t = body_json(&exchange(&idp, &code, VERIFIER));
        let id = verify_with_jwks(&idp, t["id_token"].as_str().unwrap(), "authgate");
        assert_eq!(id["email_verified"], false);
        assert_eq!(id["groups"], json!(["admins"]));
    }

    #[test]
    fn code_is_single_use() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        assert_eq!(exchange(&idp, &code, VERIFIER).status(), StatusCode::OK);
        let again = exchange(&idp, &code, VERIFIER);
        assert_eq!(again.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_of(&again), "invalid_grant");
    }

    #[test]
    fn failed_exchange_still_spends_the_code() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let wrong = "a".repeat(43);
        assert_eq!(error_of(&exchange(&idp, &code, &wrong)), "invalid_grant");
        assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
    }

    #[test]
    fn pkce_verifier_is_checked_with_s256() {
        assert!(pkce_s256_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_s256_matches(&"a".repeat(43), CHALLENGE));
        // The challenge itself, or a too-short verifier, is not a verifier.
        assert!(!pkce_s256_matches(CHALLENGE, CHALLENGE));
        assert!(!pkce_s256_matches("short", CHALLENGE));

        let idp = idp();
        let code = code_for(&idp, "alice");
        let r = token(
            &idp,
            &basic("authgate", SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        );
        assert_eq!(error_of(&r), "invalid_grant", "missing verifier");
    }

    #[test]
    fn verifier_without_challenge_is_refused() {
        let idp = idp();
        let mut p: Vec<_> = auth_params().into_iter().take(6).collect();
        p.push(("username", "alice"));
        p.push(("password", "alice"));
        let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
        let code = query_param(&location(&r), "code").unwrap();
        assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
        // Without PKCE on either side the exchange works.
        let r = idp.handle(&Method::POST, "/authorize", &HeaderMap::new(), &form(&p));
        let code = query_param(&location(&r), "code").unwrap();
        let ok = token(
            &idp,
            &basic("authgate", SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
            ],
        );
        assert_eq!(ok.status(), StatusCode::OK);
    }

    #[test]
    fn code_is_bound_to_client_and_redirect_uri() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let r = token(
            &idp,
            &basic("authgate", SECRET),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:4180/other"),
                ("code_verifier", VERIFIER),
            ],
        );
        assert_eq!(error_of(&r), "invalid_grant");

        let code = code_for(&idp, "alice");
        let r = token(
            &idp,
            &basic("other", "other-secret"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        );
        assert_eq!(error_of(&r), "invalid_grant");
    }

    #[test]
    fn expired_code_is_invalid_grant() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        idp.inner
            .grants
            .lock()
            .codes
            .get_mut(&code)
            .unwrap()
            .expires = Instant::now() - Duration::from_secs(1);
        assert_eq!(error_of(&exchange(&idp, &code, VERIFIER)), "invalid_grant");
    }

    #[test]
    fn client_authentication_failures_are_invalid_client_401() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let grant = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        let wrong_secret = token(&idp, &basic("authgate", "nope"), &grant);
        assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_of(&wrong_secret), "invalid_client");
        assert!(wrong_secret.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic"));

        let unknown = token(&idp, &basic("nobody", SECRET), &grant);
        assert_eq!(error_of(&unknown), "invalid_client");

        let none = token(&idp, &HeaderMap::new(), &grant);
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_of(&none), "invalid_client");

        let mut post_wrong = grant.to_vec();
        post_wrong.extend([("client_id", "authgate"), ("client_secret", "nope")]);
        assert_eq!(
            error_of(&token(&idp, &HeaderMap::new(), &post_wrong)),
            "invalid_client"
        );

        let mut id_only = grant.to_vec();
        id_only.push(("client_id", "authgate"));
        assert_eq!(
            error_of(&token(&idp, &HeaderMap::new(), &id_only)),
            "invalid_client"
        );

        // Two authentication methods at once is a malformed request.
        let mut both = grant.to_vec();
        both.extend([("client_id", "authgate"), ("client_secret", SECRET)]);
        let r = token(&idp, &basic("authgate", SECRET), &both);
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_of(&r), "invalid_request");

        // Authentication failures do not spend the code; client_secret_post works.
        let mut post_ok = grant.to_vec();
        post_ok.extend([("client_id", "authgate"), ("client_secret", SECRET)]);
        assert_eq!(
            token(&idp, &HeaderMap::new(), &post_ok).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        assert_eq!(
            parse_basic(&STANDARD.encode("my%3Aclient:p%40ss+word")),
            Some(("my:client".to_string(), "p@ss word".to_string()))
        );
        assert_eq!(parse_basic("!!!"), None);
        assert_eq!(parse_basic(&STANDARD.encode("no-colon")), None);
    }

    #[test]
    fn unknown_grant_type_is_unsupported_grant_type() {
        let idp = idp();
        let r = token(
            &idp,
            &basic("authgate", SECRET),
            &[("grant_type", "password"), ("username", "alice")],
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error_of(&r), "unsupported_grant_type");
        let r = token(&idp, &basic("authgate", SECRET), &[]);
        assert_eq!(error_of(&r), "invalid_request");
    }

    #[test]
    fn refresh_rotates_the_refresh_token_and_drops_the_nonce() {
        let idp = idp().with_token_ttl(Duration::from_secs(5));
        let before = idp.token_requests();
        let code = code_for(&idp, "alice");
        let first = body_json(&exchange(&idp, &code, VERIFIER));
        let rt1 = first["refresh_token"].as_str().unwrap();
        let first_id = verify_with_jwks(&idp, first["id_token"].as_str().unwrap(), "authgate");

        let refresh = |rt: &str| {
            token(
                &idp,
                &basic("authgate", SECRET),
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
        };
        let r = refresh(rt1);
        assert_eq!(r.status(), StatusCode::OK, "{}", body_str(&r));
        let second = body_json(&r);
        let rt2 = second["refresh_token"].as_str().unwrap();
        assert_ne!(rt1, rt2);
        assert_eq!(second["expires_in"], 5);
        let id = verify_with_jwks(&idp, second["id_token"].as_str().unwrap(), "authgate");
        assert!(id.get("nonce").is_none());
        assert_eq!(id["sid"], first_id["sid"]);
        assert_eq!(id["auth_time"], first_id["auth_time"]);
        assert_eq!(id["exp"].as_u64().unwrap() - id["iat"].as_u64().unwrap(), 5);

        // The old token is spent; the new one works once.
        assert_eq!(error_of(&refresh(rt1)), "invalid_grant");
        assert_eq!(refresh(rt2).status(), StatusCode::OK);
        assert_eq!(error_of(&refresh(rt2)), "invalid_grant");
        assert_eq!(idp.token_requests() - before, 5);
    }

    #[test]
    fn refresh_token_is_bound_to_its_client() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let t = body_json(&exchange(&idp, &code, VERIFIER));
        let r = token(
            &idp,
            &basic("other", "other-secret"),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ],
        );
        assert_eq!(error_of(&r), "invalid_grant");
    }

    // --- userinfo ---

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        h
    }

    #[test]
    fn userinfo_answers_access_tokens_only() {
        let idp = idp();
        let code = code_for(&idp, "bob");
        let t = body_json(&exchange(&idp, &code, VERIFIER));
        let at = t["access_token"].as_str().unwrap();
        let r = idp.handle(&Method::GET, "/userinfo", &bearer(at), b"");
        assert_eq!(r.status(), StatusCode::OK);
        let u = body_json(&r);
        assert_eq!(u["sub"], "demo-user-bob");
        assert_eq!(u["email"], "bob@example.com");
        assert_eq!(u["groups"], json!(["users"]));

        let id_token = t["id_token"].as_str().unwrap();
        for h in [bearer(id_token), bearer("garbage"), HeaderMap::new()] {
            let r = idp.handle(&Method::GET, "/userinfo", &h, b"");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert!(r.headers().contains_key(WWW_AUTHENTICATE));
        }
    }

    #[test]
    fn userinfo_refuses_tampered_access_tokens() {
        let idp = idp();
        let code = code_for(&idp, "bob");
        let t = body_json(&exchange(&idp, &code, VERIFIER));
        let parts: Vec<&str> = t["access_token"].as_str().unwrap().split('.').collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("demo-user-alice");
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let forged = format!("{}.{payload}.{}", parts[0], parts[2]);
        let r = idp.handle(&Method::GET, "/userinfo", &bearer(&forged), b"");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    // --- logout ---

    #[test]
    fn logout_without_target_shows_signed_out_page() {
        let r = get(&idp(), "/logout");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(body_str(&r).contains("Signed out"));
    }

    #[test]
    fn logout_redirects_to_a_registered_origin_with_state() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        let t = body_json(&exchange(&idp, &code, VERIFIER));
        let q = String::from_utf8(form(&[
            ("id_token_hint", t["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", "http://127.0.0.1:4180/"),
            ("state", "xyz"),
        ]))
        .unwrap();
        let r = get(&idp, &format!("/logout?{q}"));
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            r.headers()[LOCATION].to_str().unwrap(),
            "http://127.0.0.1:4180/?state=xyz"
        );
    }

    #[test]
    fn logout_refuses_unregistered_targets_and_forged_hints() {
        let idp = idp();
        let evil = String::from_utf8(form(&[
            ("client_id", "authgate"),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ]))
        .unwrap();
        let r = get(&idp, &format!("/logout?{evil}"));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get(LOCATION).is_none());

        let forged = String::from_utf8(form(&[
            ("id_token_hint", "e30.e30.AAAA"),
            ("post_logout_redirect_uri", "http://127.0.0.1:4180/"),
        ]))
        .unwrap();
        assert_eq!(
            get(&idp, &format!("/logout?{forged}")).status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn unknown_paths_and_methods_are_refused() {
        let idp = idp();
        assert_eq!(get(&idp, "/nope").status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&idp, "/token").status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn expired_grants_are_pruned() {
        let idp = idp();
        let code = code_for(&idp, "alice");
        idp.inner
            .grants
            .lock()
            .codes
            .get_mut(&code)
            .unwrap()
            .expires = Instant::now() - Duration::from_secs(1);
        let _ = code_for(&idp, "bob");
        assert!(!idp.inner.grants.lock().codes.contains_key(&code));
    }
}
