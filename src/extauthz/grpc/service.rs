//! The tonic `Authorization` service: read the `CheckRequest`, admit it
//! through the request edge, decide, answer (`serve` puts it on a Pingora
//! listener).

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use futures::FutureExt;
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
        let trace = crate::telemetry::trace::start_check(request.get_ref());
        let check = AssertUnwindSafe(self.check_request(request.get_ref())).catch_unwind();
        // Tracing records the policy too, so it collects the note as well.
        let noted = crate::access_log::scope(on || trace.is_some(), check);
        let (answer, mut log) = match &trace {
            Some(t) => tracing::Instrument::instrument(noted, t.span().clone()).await,
            None => noted.await,
        };
        if let Some(trace) = &trace {
            trace.noted(log.as_mut());
        }
        let log = log.filter(|_| on);
        let (outcome, resp) = match answer {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("ext_authz gRPC check failed internally");
                if let Some(trace) = trace {
                    trace.finish(0, Outcome::Error);
                }
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
        if let Some(trace) = trace {
            trace.finish(crate::access_log::grpc_status(&resp), outcome);
        }
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
