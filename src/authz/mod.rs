//! The decision: one function every front end asks (the proxy's
//! `request_filter`, the ext_authz HTTP check, the ext_authz gRPC check).
//! Nothing here knows Pingora or tonic types.

pub mod browser;
pub mod decide;
pub mod headers;
pub mod path;
pub mod redirect;
pub mod rules;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// Which front end asked; metrics label it and a few rules differ
/// (only `listen` serves `/oauth2/auth`, `/ping`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    Proxy,
    ExtAuthzHttp,
    ExtAuthzGrpc,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::ExtAuthzHttp => "ext_authz_http",
            Listener::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}

/// What a front end knows about a request, borrowed from its own types.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub listener: Listener,
    pub method: &'a str,
    /// `http` or `https`, as believed (TLS, or `X-Forwarded-Proto` from a
    /// trusted proxy or the ext_authz caller).
    pub scheme: &'a str,
    /// `host[:port]` as the client addressed it.
    pub host: &'a str,
    /// Path and query as received (not normalised).
    pub uri: &'a str,
    pub headers: &'a HeaderMap,
    pub client_ip: Option<IpAddr>,
}

pub use crate::domain::Identity;

/// The outcome label of `authgate_requests_total{decision}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Skipped,
    Unauthenticated,
    Forbidden,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Skipped => "skipped",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Forbidden => "forbidden",
            Outcome::Error => "error",
        }
    }
}

/// A request let through with an identity.
#[derive(Debug, Clone)]
pub struct Grant {
    pub identity: Arc<Identity>,
    /// Sent upstream as `Authorization: Bearer` when `pass_authorization`.
    pub id_token: Option<Arc<str>>,
    /// Sent upstream as `X-Forwarded-Access-Token` when `pass_access_token`.
    pub access_token: Option<Arc<str>>,
    /// Whole `Set-Cookie` values for the client (a refreshed session).
    pub set_cookies: Vec<HeaderValue>,
}

/// A complete answer authgate gives instead of the upstream: a login
/// redirect, a 401/403 page, or an `/oauth2/*` endpoint's response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    /// In order; `Set-Cookie` may repeat and every front end keeps each line.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub enum Decision {
    /// `skip_auth_routes` or a preflight with `skip_preflight`: forwarded
    /// without identity.
    Skip,
    Allow(Grant),
    Reply(Reply),
}

impl Decision {
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Skip => Outcome::Skipped,
            Decision::Allow(_) => Outcome::Allowed,
            Decision::Reply(r) => r.outcome,
        }
    }
}
