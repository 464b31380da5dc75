//! authgate: an OpenID Connect authenticating reverse proxy and Envoy
//! ext_authz provider on Pingora.
//!
//! One decision (`authz`, `Gate::decide`) behind three front ends: the proxy
//! (`proxy`), ext_authz HTTP and gRPC (`extauthz`).

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod endpoints;
pub mod extauthz;
pub mod gate;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod server;
pub mod session;
pub mod telemetry;
