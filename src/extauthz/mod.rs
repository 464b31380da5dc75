//! Envoy ext_authz front ends: HTTP (`envoyExtAuthzHttp`) and gRPC
//! (`envoyExtAuthzGrpc`). Siblings over the core: each converts its wire
//! request into the request edge's `Received`, asks `Gate::decide`, and
//! renders the decision (a `Reply` or the neutral `UpstreamEdits`) in its
//! own wire format.

pub mod grpc;
pub mod http;
