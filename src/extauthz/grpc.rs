//! The ext_authz gRPC check service (`envoy.service.auth.v3.Authorization/Check`).
//!
//! Every decision is `Ok(CheckResponse)`; `Err(Status)` is for internal
//! faults only. Allow is code 0 with identity headers set with
//! `OVERWRITE_IF_EXISTS_OR_ADD` (an unset action means append: duplicate
//! identities); `headers_to_remove` names only identity headers we did not
//! set, since Envoy applies removals after sets.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::{HeaderMap, HeaderName, HeaderValue};
use parking_lot::Mutex;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tonic::{Request, Response, Status};

use crate::authz::{Decision, Grant, Listener, Outcome, Reply, RequestView};
use crate::gate::Gate;

/// google.rpc.Code values Envoy acts on.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

pub struct ExtAuthzGrpc {
    gate: Arc<Gate>,
}

impl ExtAuthzGrpc {
    pub fn new(gate: Arc<Gate>) -> Self {
        ExtAuthzGrpc { gate }
    }

    /// The decision for one CheckRequest, as a CheckResponse.
    pub async fn check_request(&self, req: &CheckRequest) -> (Outcome, CheckResponse) {
        let attrs = req.attributes.as_ref();
        let Some(http) = attrs
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            // Istio's TCP filter sends no HTTP attributes: nothing to decide on.
            return (
                Outcome::Forbidden,
                deny_plain(PERMISSION_DENIED, 403, "no HTTP request attributes"),
            );
        };
        let headers = header_map(http);
        let host = if http.host.is_empty() {
            headers
                .get(http::header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        } else {
            http.host.clone()
        };
        let scheme = match http.scheme.as_str() {
            "https" => "https",
            "http" => "http",
            _ => match headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
            {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            },
        };
        let client_ip = attrs
            .and_then(|a| a.source.as_ref())
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                envoy_types::ext_authz::v3::pb::Address::SocketAddress(s) => {
                    s.address.parse::<IpAddr>().ok()
                }
                _ => None,
            });
        let path = if http.path.is_empty() {
            "/"
        } else {
            http.path.as_str()
        };
        let view = RequestView {
            listener: Listener::ExtAuthzGrpc,
            method: &http.method,
            scheme,
            host: &host,
            uri: path,
            headers: &headers,
            client_ip,
        };
        let decision = self.gate.decide(&view).await;
        let outcome = decision.outcome();
        let resp = match decision {
            Decision::Skip => self.allow(None),
            Decision::Allow(grant) => self.allow(Some(&grant)),
            Decision::Reply(reply) => deny(reply),
        };
        (outcome, resp)
    }

    fn allow(&self, grant: Option<&Grant>) -> CheckResponse {
        let set = grant
            .map(|g| self.gate.headers.values(g))
            .unwrap_or_default();
        let headers_to_remove = self
            .gate
            .headers
            .all_names()
            .into_iter()
            .filter(|n| !set.iter().any(|(s, _)| s == n))
            .map(|n| n.as_str().to_owned())
            .collect();
        let headers = set
            .iter()
            .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
            .collect();
        let response_headers_to_add = grant
            .map(|g| {
                g.set_cookies
                    .iter()
                    .map(|c| {
                        option(
                            &http::header::SET_COOKIE,
                            c,
                            HeaderAppendAction::AppendIfExistsOrAdd,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                response_headers_to_add,
                ..Default::default()
            })),
            ..Default::default()
        }
    }
}

fn option(name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    }
}

/// A deny carrying our whole reply: status, each header (each `Set-Cookie`
/// its own option, appended), body.
fn deny(reply: Reply) -> CheckResponse {
    let code = match reply.outcome {
        Outcome::Forbidden => PERMISSION_DENIED,
        Outcome::Error => UNAVAILABLE,
        _ => UNAUTHENTICATED,
    };
    let headers = reply
        .headers
        .iter()
        .map(|(n, v)| {
            let action = if n == http::header::SET_COOKIE {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            };
            option(n, v, action)
        })
        .collect();
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(reply.status.as_u16()),
            }),
            headers,
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        })),
        ..Default::default()
    }
}

fn deny_plain(code: i32, http_status: u16, message: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: message.to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(http_status),
            }),
            headers: Vec::new(),
            body: String::new(),
        })),
        ..Default::default()
    }
}

/// Headers from `headers`, else from `header_map` (Envoy fills one or the
/// other). Pseudo-headers and invalid names are skipped.
fn header_map(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    let mut add = |k: &str, v: &[u8]| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            map.append(n, v);
        }
    };
    if !http.headers.is_empty() {
        for (k, v) in &http.headers {
            add(k, v.as_bytes());
        }
    } else if let Some(hm) = &http.header_map {
        for h in &hm.headers {
            let v = if h.raw_value.is_empty() {
                h.value.as_bytes()
            } else {
                &h.raw_value
            };
            add(&h.key, v);
        }
    }
    map
}

#[tonic::async_trait]
impl Authorization for ExtAuthzGrpc {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let (outcome, resp) = self.check_request(request.get_ref()).await;
        self.gate
            .metrics
            .request(Listener::ExtAuthzGrpc, outcome, started.elapsed());
        Ok(Response::new(resp))
    }
}

/// Runs the gRPC server (h2c) inside Pingora as a background service, so it
/// shares the process, the state and the shutdown.
pub struct GrpcService {
    gate: Arc<Gate>,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl GrpcService {
    /// Binds now so a taken port fails start-up, not later.
    pub fn bind(gate: Arc<Gate>, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(GrpcService {
            gate,
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
                tonic::transport::server::TcpIncoming::from(listener),
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
