//! The tonic `Authorization` service: read the `CheckRequest`, admit it
//! through the request edge, decide, answer; and the background service
//! that serves it inside Pingora's process.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use async_trait::async_trait;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use futures::FutureExt;
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tonic::{Request, Response, Status};

use super::{request, response, PERMISSION_DENIED};
use crate::authz::{admit, Decision, Listener, Outcome, Trust};
use crate::reload::GateHandle;

/// The ext_authz gRPC check service (`server.ext_authz_grpc`).
pub struct ExtAuthzGrpc {
    gate: GateHandle,
}

impl ExtAuthzGrpc {
    /// The check service over `gate`.
    pub fn new(gate: impl Into<GateHandle>) -> Self {
        ExtAuthzGrpc { gate: gate.into() }
    }

    /// The decision for one CheckRequest, as a CheckResponse.
    pub async fn check_request(&self, req: &CheckRequest) -> (Outcome, CheckResponse) {
        let Some(checked) = request::read(req) else {
            return (
                Outcome::Forbidden,
                response::deny_plain(PERMISSION_DENIED, 403, "no HTTP request attributes"),
            );
        };
        let admitted = match admit(checked.received(), Trust::Caller) {
            Ok(a) => a,
            Err(reply) => return (reply.outcome, response::deny(reply)),
        };
        let gate = self.gate.load();
        crate::access_log::note_request(&gate, &admitted.view());
        let decision = gate.decide(&admitted.view()).await;
        let outcome = decision.outcome();
        let resp = match decision {
            Decision::Skip => response::allow(gate.upstream_edits(None, &checked.headers)),
            Decision::Allow(grant) => {
                response::allow(gate.upstream_edits(Some(grant), &checked.headers))
            }
            Decision::Reply(reply) => response::deny(reply),
        };
        (outcome, resp)
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let on = crate::access_log::enabled(&self.gate.load());
        let check = AssertUnwindSafe(self.check_request(request.get_ref())).catch_unwind();
        let (answer, log) = crate::access_log::scope(on, check).await;
        let (outcome, resp) = match answer {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("ext_authz gRPC check failed internally");
                self.gate.load().metrics.request(
                    Listener::ExtAuthzGrpc,
                    Outcome::Error,
                    started.elapsed(),
                );
                return Err(Status::internal("authorization check failed"));
            }
        };
        self.gate
            .load()
            .metrics
            .request(Listener::ExtAuthzGrpc, outcome, started.elapsed());
        if let Some(note) = log {
            let entry = crate::access_log::Entry {
                listener: Listener::ExtAuthzGrpc,
                status: crate::access_log::grpc_status(&resp),
                outcome,
                upstream: "",
                elapsed: started.elapsed(),
            };
            crate::access_log::emit(&entry, &note, ("", "", ""));
        }
        Ok(Response::new(resp))
    }
}

/// Runs the gRPC server (h2c) inside Pingora as a background service, so it
/// shares the process, the state and the shutdown.
pub struct GrpcService {
    gate: GateHandle,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl GrpcService {
    /// Binds now so a taken port fails start-up, not later.
    pub fn bind(gate: impl Into<GateHandle>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(GrpcService {
            gate: gate.into(),
            listener: Mutex::new(Some(listener)),
        })
    }
}

#[async_trait]
impl BackgroundService for GrpcService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().take() else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "ext_authz gRPC listener failed");
                return;
            }
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<AuthorizationServer<ExtAuthzGrpc>>()
            .await;
        let result = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(AuthorizationServer::new(ExtAuthzGrpc::new(
                self.gate.clone(),
            )))
            .serve_with_incoming_shutdown(
                // Nagle's algorithm holds each response's small trailers
                // frame until the client's delayed ACK: ~40 ms per `Check`.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = shutdown.changed().await;
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "ext_authz gRPC server stopped");
        }
    }
}
