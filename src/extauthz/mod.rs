//! Envoy ext_authz front ends: HTTP (`envoyExtAuthzHttp`) and gRPC
//! (`envoyExtAuthzGrpc`), each a thin adapter over `Gate::decide`.

pub mod grpc;
pub mod http;
