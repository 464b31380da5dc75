//! The ext_authz HTTP check service. Envoy sends the original method, path
//! (after `path_prefix`) and `Host`, plus only the headers the provider
//! config lists. Envoy allows on exactly 200 (202 is a deny); every other
//! answer goes back to the client as it is.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::{HeaderValue, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::authz::{Decision, Grant, Listener, Outcome, RequestView};
use crate::endpoints::pages;
use crate::gate::Gate;
use crate::proxy::{header_bytes, scheme_and_host, MAX_HEADER_BYTES};

pub const HEADERS_TO_REMOVE: &str = "x-envoy-auth-headers-to-remove";

pub struct ExtAuthzHttp {
    gate: Arc<Gate>,
}

impl ExtAuthzHttp {
    pub fn new(gate: Arc<Gate>) -> Self {
        ExtAuthzHttp { gate }
    }

    /// 200 with our identity headers, and the protected names we did not set
    /// listed for Envoy to remove from the upstream request.
    fn allow(&self, grant: Option<&Grant>) -> Response<Vec<u8>> {
        let mut resp = Response::new(Vec::new());
        *resp.status_mut() = StatusCode::OK;
        let set = grant
            .map(|g| self.gate.headers.values(g))
            .unwrap_or_default();
        let all = self.gate.headers.all_names();
        let unset = all
            .iter()
            .filter(|n| !set.iter().any(|(s, _)| s == *n))
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let h = resp.headers_mut();
        for (name, value) in set {
            h.insert(name, value);
        }
        if !unset.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&unset) {
                h.insert(HEADERS_TO_REMOVE, v);
            }
        }
        if let Some(g) = grant {
            for c in &g.set_cookies {
                h.append(http::header::SET_COOKIE, c.clone());
            }
        }
        resp
    }
}

#[async_trait]
impl ServeHttp for ExtAuthzHttp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let started = Instant::now();
        let (outcome, resp) = self.check(session).await;
        self.gate
            .metrics
            .request(Listener::ExtAuthzHttp, outcome, started.elapsed());
        resp
    }
}

impl ExtAuthzHttp {
    async fn check(&self, session: &mut ServerSession) -> (Outcome, Response<Vec<u8>>) {
        let req = session.req_header();
        if header_bytes(req) > MAX_HEADER_BYTES {
            let r = pages::text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Outcome::Error,
                "Request header fields too large\n",
            );
            return (r.outcome, to_response(r));
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let (scheme, host) = scheme_and_host(req, client, &self.gate, false, true);
        let full = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let prefix = self.gate.cfg.server.ext_authz_path_prefix.as_str();
        let uri = match full.strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() && rest.starts_with('/') => rest,
            Some(rest) if !prefix.is_empty() && (rest.is_empty() || rest.starts_with('?')) => {
                // `/prefix?x` checks `/`.
                return self
                    .decide_owned(format!("/{rest}"), req, scheme, host, client)
                    .await;
            }
            _ => full,
        };
        let view = RequestView {
            listener: Listener::ExtAuthzHttp,
            method: req.method.as_str(),
            scheme,
            host,
            uri,
            headers: &req.headers,
            client_ip: client,
        };
        self.respond(self.gate.decide(&view).await)
    }

    async fn decide_owned(
        &self,
        uri: String,
        req: &pingora_http::RequestHeader,
        scheme: &'static str,
        host: &str,
        client: Option<std::net::IpAddr>,
    ) -> (Outcome, Response<Vec<u8>>) {
        let view = RequestView {
            listener: Listener::ExtAuthzHttp,
            method: req.method.as_str(),
            scheme,
            host,
            uri: &uri,
            headers: &req.headers,
            client_ip: client,
        };
        self.respond(self.gate.decide(&view).await)
    }

    fn respond(&self, decision: Decision) -> (Outcome, Response<Vec<u8>>) {
        let outcome = decision.outcome();
        let resp = match decision {
            Decision::Skip => self.allow(None),
            Decision::Allow(grant) => self.allow(Some(&grant)),
            Decision::Reply(reply) => to_response(reply),
        };
        (outcome, resp)
    }
}

/// A deny as Envoy passes it on: status, body, each `Set-Cookie` its own line.
fn to_response(reply: crate::authz::Reply) -> Response<Vec<u8>> {
    let mut resp = Response::new(reply.body.to_vec());
    *resp.status_mut() = reply.status;
    let h = resp.headers_mut();
    for (name, value) in reply.headers {
        h.append(name, value);
    }
    if let Ok(v) = HeaderValue::from_str(&resp.body().len().to_string()) {
        resp.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    resp
}
