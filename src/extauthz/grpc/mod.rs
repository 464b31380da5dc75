//! The ext_authz gRPC check service (`envoy.service.auth.v3.Authorization/Check`).
//!
//! Every decision is `Ok(CheckResponse)`; `Err(Status)` is for internal
//! faults only (Envoy then applies its `failure_mode_allow` / `status_on_error`).
//! Allow is code 0 with identity headers set with `OVERWRITE_IF_EXISTS_OR_ADD`
//! (an unset action would append: duplicate identities); `headers_to_remove`
//! names only identity headers we did not set, since Envoy applies removals
//! after sets. Denies carry our whole reply in `denied_response`, each
//! `Set-Cookie` its own `APPEND_IF_EXISTS_OR_ADD` option (the deprecated
//! `append` flag is left unset: with it Envoy folds values into one line).
//!
//! `request` converts the wire to the request edge's view, `response` the
//! decision back to the wire, `service` orchestrates (as Pomerium's
//! authorize service does), `serve` serves it on a Pingora listener.

mod request;
mod response;
mod serve;
mod service;
#[cfg(test)]
mod tests;

pub use request::admit_check;
pub use response::{INVALID_ARGUMENT, OK, PERMISSION_DENIED, UNAUTHENTICATED, UNAVAILABLE};
pub use serve::GrpcApp;
pub use service::ExtAuthzGrpc;
