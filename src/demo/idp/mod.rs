//! The development OpenID provider: its state, its clients and the routing of
//! a request to the endpoint module that answers it.
//!
//! A small, spec-following provider for `authgate demo` and for authgate's own
//! tests. Authorization code flow only (RFC 6749 + OIDC Core), PKCE S256
//! (RFC 7636), client_secret_basic / client_secret_post, refresh-token
//! rotation, RP-initiated logout. Users and passwords are fixed and public,
//! state lives in memory and the RS256 key is generated at start: development
//! use only.
//!
//! Request handling is the synchronous [`DemoIdp::handle`]; [`DemoIdp::handler`]
//! adapts it to the demo's [`http_server`](super::http_server), so tests can
//! drive `handle` directly or over HTTP.

mod authorize;
mod discovery;
mod keys;
mod logout;
mod pages;
mod token;
mod userinfo;
mod users;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use parking_lot::Mutex;
use rsa::RsaPrivateKey;
use url::Url;

use super::http_server::{self, Handler, Request};
use keys::Signer;
use pages::{bad_request_page, not_found, text_response};
use token::Grants;

/// Access and ID token lifetime unless [`DemoIdp::with_token_ttl`] says otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// Forms and token requests are tiny; anything bigger is not a real client.
const MAX_BODY: usize = 64 * 1024;

/// A registered relying party.
#[derive(Clone)]
pub struct DemoClient {
    /// The `client_id` it authenticates with.
    pub client_id: String,
    /// Its `client_secret` (client_secret_basic or client_secret_post).
    pub client_secret: String,
    /// Exact-match redirect URIs. Empty: any `http://127.0.0.1`, `http://localhost`
    /// or `http://[::1]` URI (the demo proxy's port is only known at run time).
    pub redirect_uris: Vec<String>,
}

/// The secret stays out of `Debug`.
impl std::fmt::Debug for DemoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// Why the provider could not be built.
#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    /// The issuer is not an http(s) URL with a host and without query or
    /// fragment (OIDC Discovery 1.0 section 3 `issuer`).
    #[error("issuer URL must be http(s) with a host and no query or fragment: {0}")]
    BadIssuer(String),
    /// The operating system's randomness failed while generating the RSA key.
    #[error("generating the RSA signing key failed: {0}")]
    KeyGeneration(#[from] rsa::Error),
    /// The RSA key could not be DER-encoded for signing.
    #[error("encoding the RSA signing key failed: {0}")]
    KeyEncoding(String),
}

/// Query or form parameters, each name at most once.
type Params = HashMap<String, String>;

/// The state every clone of a [`DemoIdp`] shares.
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
/// a server.
#[derive(Clone)]
pub struct DemoIdp {
    inner: Arc<Inner>,
}

// === impl DemoIdp ===

impl DemoIdp {
    /// Builds the provider with a fresh 2048-bit RSA key (slow in debug builds).
    ///
    /// Errors with [`IdpError`] for a bad issuer or a failed key generation.
    pub fn new(issuer: Url, clients: Vec<DemoClient>) -> anyhow::Result<DemoIdp> {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).map_err(IdpError::from)?;
        Self::new_with_key(issuer, clients, key)
    }

    /// Builds the provider with a given key, so tests can share one key.
    ///
    /// Errors with [`IdpError::BadIssuer`] unless `issuer` is an http(s) URL
    /// with a host and no query or fragment.
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
                Err(dup) => repeated(&dup),
            },
            (&Method::POST, "/authorize" | "/login") => match parse_params(body) {
                Ok(p) => self.authorize_post(&p),
                Err(dup) => repeated(&dup),
            },
            (&Method::POST, "/token") => self.token(headers, body),
            (&Method::GET | &Method::POST, "/userinfo") => self.userinfo(headers),
            (&Method::GET, "/logout") => match parse_params(query.as_bytes()) {
                Ok(p) => self.logout(&p),
                Err(dup) => repeated(&dup),
            },
            (&Method::POST, "/logout") => match parse_params(body) {
                Ok(p) => self.logout(&p),
                Err(dup) => repeated(&dup),
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

    /// This provider as a [`Handler`] for the demo's
    /// [`http_server`](super::http_server): bodies over 64 KiB get 413, the
    /// rest goes to [`DemoIdp::handle`].
    pub fn handler(&self) -> Handler {
        let idp = self.clone();
        http_server::handler(move |req: Request| {
            let resp = idp.serve(&req);
            async move { resp.into() }
        })
    }

    fn serve(&self, req: &Request) -> Response<Vec<u8>> {
        if req.body.len() > MAX_BODY {
            return text_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        let Ok(method) = Method::from_bytes(req.method.as_bytes()) else {
            return text_response(StatusCode::BAD_REQUEST, "bad method");
        };
        self.handle(&method, &req.target, &req.header_map(), &req.body)
    }

    /// The URL of endpoint `name` under the issuer.
    fn endpoint(&self, name: &str) -> String {
        format!("{}/{name}", self.inner.issuer)
    }

    fn ttl_secs(&self) -> u64 {
        self.inner.token_ttl_secs.load(Ordering::Relaxed)
    }

    fn client(&self, client_id: &str) -> Option<&DemoClient> {
        self.inner.clients.iter().find(|c| c.client_id == client_id)
    }
}

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

fn repeated(name: &str) -> Response<Vec<u8>> {
    bad_request_page(&format!("Parameter {name} is repeated."))
}

/// True for plain-http loopback URLs, the only ones a client without
/// registered redirect URIs may use.
fn is_loopback_http(uri: &Url) -> bool {
    uri.scheme() == "http"
        && matches!(
            uri.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        )
}
