//! authgate: an OpenID Connect authenticating reverse proxy and Envoy
//! ext_authz provider on Pingora.
//!
//! One decision behind three thin front ends. The house, bottom up:
//!
//! - [`domain`]: plain types every layer shares (`Identity`,
//!   `LogoutTarget`, `Secret`, random tokens); imports nothing of ours.
//! - [`config`]: the YAML file → validated, typed model (loaded once).
//! - [`oidc`]: the relying party (discovery, JWKS, code flow, ID-token
//!   verification on `openidconnect`; bearer and logout JWTs).
//! - [`session`]: the session format, its cookies and its stores.
//! - [`authz`]: the request edge (`admit`: 431/400, scheme, host, client IP,
//!   normalised path, [`authz::Endpoint`]), the decision (`Gate::decide`)
//!   and what an allow does upstream ([`authz::UpstreamEdits`]).
//! - [`endpoints`]: authgate's own `/oauth2/*`, `/ping`, `/ready` answers.
//! - [`gate`]: the shared state the decision runs on; [`reload`]: the one
//!   handle every front end reads it through, swapped on `SIGHUP`.
//! - Front ends: [`proxy`] (Pingora `ProxyHttp`), [`extauthz`] (Envoy HTTP
//!   and gRPC). Each converts its wire request for `admit`, asks `decide`,
//!   and applies or renders the answer; none imports another.
//! - [`server`], [`metrics`], [`telemetry`], [`access_log`], [`cli`]: the process.
//! - [`migrate`]: `authgate migrate`, an oauth2-proxy configuration into an authgate one;
//!   [`policy_explain`]: `authgate policy explain`.
//! - `demo` (Cargo feature, on by default, off in the container image): the
//!   development IdP, the echo upstream and the one test HTTP server.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![deny(missing_docs)]
// Nothing a request can reach may panic on a `None` or an `Err`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access_log;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod domain;
pub mod endpoints;
pub mod extauthz;
pub mod gate;
pub mod metrics;
pub mod migrate;
pub mod oidc;
pub mod policy_explain;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod telemetry;
#[cfg(test)]
mod testkit;

// The unit tests' kit serves the demo IdP, so the unit tests need the feature;
// say so instead of failing on a missing module.
#[cfg(all(test, not(feature = "demo")))]
compile_error!(
    "authgate's unit tests need the `demo` feature (on by default): run them without --no-default-features"
);
