//! The decision: one function every front end asks (the proxy's
//! `request_filter`, the ext_authz HTTP check, the ext_authz gRPC check).
//! Nothing here knows Pingora or tonic types.
//!
//! A request flows through it as: [`request::admit`] (the request edge)
//! → [`RequestView`] → [`Gate::decide`](crate::gate::Gate) → [`Decision`];
//! an allow or skip becomes [`UpstreamEdits`] (`Gate::upstream_edits`),
//! which the proxy applies and the ext_authz front ends render.

pub mod assertion;
pub mod browser;
pub mod decide;
pub mod edits;
pub mod endpoint;
pub mod headers;
pub mod original;
pub mod path;
pub mod policy;
pub mod redirect;
pub mod request;
pub mod rules;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::domain::Secret;
pub use edits::UpstreamEdits;
pub use endpoint::Endpoint;
pub use original::Original;
pub use request::{admit, Admitted, Received, Trust};

/// Which front end asked; metrics label it and a few rules differ
/// (only `listen` serves `/oauth2/auth`, `/ping`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Listener {
    /// `server.listen`: the Pingora proxy.
    Proxy,
    /// `server.ext_authz_http`: Envoy's HTTP ext_authz check.
    ExtAuthzHttp,
    /// `server.ext_authz_grpc`: Envoy's gRPC `Authorization/Check`.
    ExtAuthzGrpc,
}

impl Listener {
    /// The `listener` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::ExtAuthzHttp => "ext_authz_http",
            Listener::ExtAuthzGrpc => "ext_authz_grpc",
        }
    }
}

/// What the decision knows about a request, borrowed from the front end's
/// own types. Built by the request edge ([`request::admit`]) only.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The listener that received it.
    pub listener: Listener,
    /// The method as sent.
    pub method: &'a str,
    /// `http` or `https`, as believed (TLS, or `X-Forwarded-Proto` from a
    /// trusted proxy or the ext_authz caller).
    pub scheme: &'a str,
    /// `host[:port]` as the client addressed it.
    pub host: &'a str,
    /// Path and query as received (not normalised; without Envoy's
    /// `path_prefix`).
    pub uri: &'a str,
    /// The [normalised](path::normalize) path routes are matched on.
    pub path: &'a str,
    /// authgate's own endpoint the path names on this listener, if any.
    pub endpoint: Option<Endpoint>,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The client's address (the TCP peer, or the `CheckRequest`'s source).
    pub client_ip: Option<IpAddr>,
    /// For `/oauth2/auth` from a trusted forward-auth caller: the original
    /// request its headers report, which the rules are applied to.
    pub original: Option<Original<'a>>,
}

pub use crate::domain::Identity;

/// The outcome label of `authgate_requests_total{decision}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Let through with an identity (or an endpoint answered for a user).
    Allowed,
    /// Let through without authentication (skip route, preflight, `/ping`).
    Skipped,
    /// No valid credentials: 401 or a login redirect.
    Unauthenticated,
    /// Authenticated but not authorized: 403.
    Forbidden,
    /// Refused input or an unavailable dependency.
    Error,
}

impl Outcome {
    /// The `decision` label of `authgate_requests_total`.
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
    /// Who the request is.
    pub identity: Arc<Identity>,
    /// Sent upstream as `Authorization: Bearer` when `pass_authorization`.
    pub id_token: Option<Secret<Arc<str>>>,
    /// Sent upstream as `X-Forwarded-Access-Token` when `pass_access_token`.
    pub access_token: Option<Secret<Arc<str>>>,
    /// Whole `Set-Cookie` values for the client (a refreshed session).
    pub set_cookies: Vec<HeaderValue>,
    /// The IdP's subject (`sub`); empty when unknown.
    pub sub: Arc<str>,
    /// The verified claims, when a policy expression reads them.
    pub claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The signed identity assertion (`assertion.header`), set by the
    /// decision on an allow when the assertion is on.
    pub assertion: Option<HeaderValue>,
}

/// A complete answer authgate gives instead of the upstream: a login
/// redirect, a 401/403 page, or an `/oauth2/*` endpoint's response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// In order; `Set-Cookie` may repeat and every front end keeps each line.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (`Content-Length` is added by the front end).
    pub body: Bytes,
    /// How metrics count it.
    pub outcome: Outcome,
}

/// The decision's answer for one request.
#[derive(Debug, Clone)]
pub enum Decision {
    /// `skip_auth_routes` or a preflight with `skip_preflight`: forwarded
    /// without identity.
    Skip,
    /// Forwarded with the grant's identity.
    Allow(Grant),
    /// Answered by authgate itself.
    Reply(Reply),
}

impl Decision {
    /// How metrics count it.
    pub fn outcome(&self) -> Outcome {
        match self {
            Decision::Skip => Outcome::Skipped,
            Decision::Allow(_) => Outcome::Allowed,
            Decision::Reply(r) => r.outcome,
        }
    }
}
