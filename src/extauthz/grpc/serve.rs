//! Serving the gRPC check service on a Pingora listener: each accepted
//! connection goes to hyper's HTTP/2 server with tonic's routes (the
//! `Authorization` service and the standard health service), so the
//! listening socket is in Pingora's table and `--upgrade` hands it over
//! with the others; a connection gets a graceful `GOAWAY` when shutdown
//! starts (RFC 9113 §6.8: streams already sent are still answered).

use std::sync::Arc;

use async_trait::async_trait;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tonic::codegen::Service;
use tonic::service::Routes;

use super::service::ExtAuthzGrpc;
use crate::reload::GateHandle;

/// The ext_authz gRPC listener's application (h2c, prior knowledge, as
/// Envoy's gRPC client speaks it). Pingora sets `TCP_NODELAY` on every
/// accepted socket: without it each response's small trailers frame waits
/// for the client's delayed ACK (~40 ms per `Check`).
pub struct GrpcApp {
    routes: Routes,
    h2: http2::Builder<TokioExecutor>,
}

impl GrpcApp {
    /// The check service over `gate`, and the health service reporting it
    /// `SERVING` (`grpc.health.v1.Health/Check`).
    ///
    /// The HTTP/2 settings are hyper's defaults, as tonic's server used
    /// them: no stream limit, 64 KiB windows, 16 KiB frames, 16 KiB header
    /// list, no keep-alive pings.
    pub fn new(gate: impl Into<GateHandle>) -> Self {
        let (health, health_service) = tonic_health::server::health_reporter();
        // The reporter's state is a watch value: setting it needs no runtime.
        let set = health.set_serving::<AuthorizationServer<ExtAuthzGrpc>>();
        futures::executor::block_on(set);
        let routes = Routes::new(health_service)
            .add_service(AuthorizationServer::new(ExtAuthzGrpc::new(gate)))
            .prepare();
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        GrpcApp { routes, h2 }
    }
}

#[async_trait]
impl ServerApp for GrpcApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let routes = self.routes.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let mut routes = routes.clone();
            async move {
                std::future::poll_fn(|cx| {
                    Service::<Request<Incoming>>::poll_ready(&mut routes, cx)
                })
                .await?;
                routes.call(req).await
            }
        });
        let conn = self.h2.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut shutdown = shutdown.clone();
        let result = if *shutdown.borrow() {
            // Accepted as shutdown began: answer what it sends first, then GOAWAY.
            conn.as_mut().graceful_shutdown();
            conn.await
        } else {
            tokio::select! {
                r = conn.as_mut() => r,
                _ = shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "ext_authz gRPC connection ended with an error");
        }
        // HTTP/2 connections are never handed back for reuse.
        None
    }
}
