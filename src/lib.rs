//! authgate: an OpenID Connect authenticating reverse proxy and Envoy
//! ext_authz provider on Pingora.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod authz;
pub mod config;
pub mod demo;
pub mod session;
