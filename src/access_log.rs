//! The decision log (`telemetry.access_log`): one line per request on every
//! listener, as a `tracing` event with target `authgate::access`, so
//! `--log-format json` renders it as one JSON object per line and the text
//! format as one readable line. It never carries a cookie, a token or a
//! query string: only the method, the host, the path without its query,
//! the status, the decision, the policy that applied, the `user` claim, the
//! upstream, the duration and the trace id.
//!
//! The front ends collect what the decision learnt (the request as
//! admitted, the user) through a [`Note`] kept in a task-local for the
//! duration of the decision ([`scope`]); outside a scope (the log is off)
//! noting does nothing and costs nothing.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use http::HeaderMap;

use crate::authz::decide::{skips_authentication, Before};
use crate::authz::policy::{self, Selection, Target};
use crate::authz::{Endpoint, Listener, Outcome, RequestView};
use crate::gate::Gate;

/// The `tracing` target of the decision log lines.
pub const TARGET: &str = "authgate::access";

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// What the decision learnt about one request, for its log line.
#[derive(Debug, Default, Clone)]
pub struct Note {
    /// Set once the request was admitted (else the front end's raw values
    /// are logged).
    pub admitted: bool,
    /// The method as sent (the original request's for a forward-auth check).
    pub method: String,
    /// `host[:port]` as believed by the request edge.
    pub host: String,
    /// The normalised path, never the query.
    pub path: String,
    /// The policy (or policies, comma-separated) that applied; empty when
    /// only `authorization` decided.
    pub rule: String,
    /// The configured `user` claim of the identified user; empty when
    /// nobody was identified.
    pub user: String,
    /// The W3C `traceparent` or B3 `x-b3-traceid` trace id; empty if none.
    pub trace_id: String,
}

/// Runs `fut` collecting a [`Note`] when `on`; without `on` it just runs it.
///
/// The noting path is boxed: Pingora copies every request's filter future
/// into a box of its own, so a future kept inline here would make every
/// request pay for a log that is off (the default).
pub async fn scope<F: Future>(on: bool, fut: F) -> (F::Output, Option<Note>) {
    if !on {
        return (fut.await, None);
    }
    Box::pin(NOTE.scope(RefCell::new(Note::default()), async {
        let out = fut.await;
        let note = NOTE.try_with(|n| n.take()).unwrap_or_default();
        (out, Some(note))
    }))
    .await
}

/// Whether `gate`'s configuration turns the decision log on.
pub fn enabled(gate: &Gate) -> bool {
    gate.cfg.telemetry.access_log
}

/// Notes the admitted request (inside a [`scope`]; else nothing): its
/// target as the policies see it, the policies that apply, the trace id.
pub fn note_request(gate: &Gate, view: &RequestView<'_>) {
    let _ = NOTE.try_with(|n| {
        let mut n = n.borrow_mut();
        // The request as this listener received it (for ext_authz, the
        // original request Envoy reports); the policies see its target.
        n.admitted = true;
        n.method = view.method.to_string();
        n.host = view.host.to_string();
        n.path = without_query(view.path).to_string();
        n.rule = rule(gate, view);
        n.trace_id = trace_id(view.headers);
    });
}

/// The policy (or policies) that decide `view`, as the decision will:
/// none for authgate's own endpoints (`/oauth2/auth` is decided on the
/// request it reports), none when `skip_auth_routes` or `skip_preflight`
/// skip it first, the `skip_auth` policy that skips it, else the
/// restrictive policies that apply.
fn rule(gate: &Gate, view: &RequestView<'_>) -> String {
    if view.endpoint.is_some_and(|e| e != Endpoint::Auth) {
        return String::new();
    }
    match gate.before_authentication(view) {
        Before::Skip => {
            let routes = view.original.map_or(*view, |o| o.view(view));
            if skips_authentication(&gate.cfg.authorization, &routes) {
                return String::new();
            }
            match policy::select(&gate.cfg.policies.list, &Target::of(view)) {
                Selection::Skip(p) => p.name.clone(),
                _ => String::new(),
            }
        }
        Before::Authenticate(Selection::Apply(list)) => {
            let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
            names.join(",")
        }
        Before::Authenticate(_) => String::new(),
    }
}

/// Notes the identified user's `user` claim (inside a [`scope`]).
pub fn note_user(user: &str) {
    let _ = NOTE.try_with(|n| {
        let mut n = n.borrow_mut();
        n.user.clear();
        n.user.push_str(user);
    });
}

/// The trace id of an incoming W3C `traceparent` (`00-<32 hex>-<16 hex>-<2
/// hex>`), else B3's `x-b3-traceid` (16 or 32 hex), else empty. Anything
/// not hex of the right length is ignored, so no client text reaches a log.
pub fn trace_id(headers: &HeaderMap) -> String {
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        let mut parts = tp.trim().split('-');
        if let (Some(_version), Some(id)) = (parts.next(), parts.next()) {
            if hex(id, &[32]) && id.bytes().any(|b| b != b'0') {
                return id.to_ascii_lowercase();
            }
        }
    }
    if let Some(id) = headers.get("x-b3-traceid").and_then(|v| v.to_str().ok()) {
        let id = id.trim();
        if hex(id, &[16, 32]) {
            return id.to_ascii_lowercase();
        }
    }
    String::new()
}

/// `/ping` and `/ready` (health probes) are left out of the log.
pub fn is_probe(path: &str) -> bool {
    matches!(without_query(path), "/ping" | "/ready")
}

/// `path` up to its `?`.
pub fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The HTTP status an ext_authz gRPC answer stands for: the denied
/// response's status, else 200 (allowed).
pub fn grpc_status(resp: &CheckResponse) -> u16 {
    match &resp.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d
            .status
            .as_ref()
            .and_then(|s| u16::try_from(s.code).ok())
            .unwrap_or(403),
        _ => 200,
    }
}

/// One request's line.
pub struct Entry<'a> {
    /// The listener it arrived on.
    pub listener: Listener,
    /// The status answered (for an ext_authz check, the status the client
    /// gets on a deny, 200 on an allow).
    pub status: u16,
    /// The decision.
    pub outcome: Outcome,
    /// The upstream it was proxied to (`name` or `host:port`); empty when
    /// not proxied.
    pub upstream: &'a str,
    /// From the request's start to the answer.
    pub elapsed: Duration,
}

/// Writes the line for `entry` with what `note` holds; `fallback` gives the
/// method, host and path as received when the request was not admitted.
pub fn emit(entry: &Entry<'_>, note: &Note, fallback: (&str, &str, &str)) {
    let (method, host, path) = if note.admitted {
        (note.method.as_str(), note.host.as_str(), note.path.as_str())
    } else {
        (fallback.0, fallback.1, without_query(fallback.2))
    };
    if is_probe(path) {
        return;
    }
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tracing::info!(
        target: TARGET,
        time = %time,
        // `%` (Display) for every text field: the text format prints a
        // plain `&str` quoted, and the line reads `key=value` throughout.
        listener = %listener_name(entry.listener),
        method = %method,
        host = %host,
        path = %path,
        status = entry.status,
        decision = %entry.outcome.as_str(),
        rule = %note.rule,
        user = %note.user,
        upstream = %entry.upstream,
        duration_ms = entry.elapsed.as_secs_f64() * 1000.0,
        trace_id = %note.trace_id,
        "request"
    );
}

fn listener_name(l: Listener) -> &'static str {
    match l {
        Listener::Proxy => "proxy",
        Listener::ExtAuthzHttp => "ext_authz_http",
        Listener::ExtAuthzGrpc => "ext_authz_grpc",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn trace_id_from_traceparent_then_b3_else_empty() {
        let tp = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(&headers(&[
                ("traceparent", tp),
                ("x-b3-traceid", "a3ce929d0e0e4736")
            ])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            trace_id(&headers(&[("x-b3-traceid", "a3ce929d0e0e4736")])),
            "a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(&headers(&[("traceparent", "00-nothex-x-01")])), "");
        let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(trace_id(&headers(&[("traceparent", zero)])), "");
        assert_eq!(trace_id(&HeaderMap::new()), "");
    }

    #[test]
    fn probes_and_queries() {
        assert!(is_probe("/ping"));
        assert!(is_probe("/ready?x=1"));
        assert!(!is_probe("/pingx"));
        assert_eq!(without_query("/a/b?token=s"), "/a/b");
    }

    #[tokio::test]
    async fn noting_outside_a_scope_does_nothing_and_inside_collects() {
        note_user("ignored");
        let ((), note) = scope(false, async { note_user("x") }).await;
        assert!(note.is_none());
        let ((), note) = scope(true, async { note_user("alice@example.com") }).await;
        assert_eq!(note.unwrap().user, "alice@example.com");
    }
}
