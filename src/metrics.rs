//! One registry, the contract's metric families, nothing else.
//!
//! Front ends record through [`Metrics`]; `GET /metrics` on `server.metrics`
//! renders the same registry.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::authz::{Listener, Outcome};

/// The one Prometheus registry and authgate's named metrics (the
/// contract's metrics table). Cheap to clone: the counters are shared.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    idp_requests: IntCounterVec,
    sessions: IntCounterVec,
    upstream_errors: IntCounter,
    dependency_up: IntGaugeVec,
    policy_decisions: IntCounterVec,
    /// The policy names whose `authgate_policy_decisions_total` series are
    /// exported (at zero until counted): the running config's restrictive
    /// policies. See [`Metrics::policies_configured`].
    policy_names: Arc<parking_lot::Mutex<Vec<String>>>,
    /// Per-request children resolved once: `with_label_values` hashes the
    /// labels and takes a lock on every call. Request counters are created
    /// on first use (not at start-up) so `/metrics` shows the same series.
    request_children: Arc<RequestChildren>,
}

const LISTENERS: [Listener; 3] = [
    Listener::Proxy,
    Listener::ExtAuthzHttp,
    Listener::ExtAuthzGrpc,
];
const OUTCOMES: usize = 5;

struct RequestChildren {
    counters: [[OnceLock<IntCounter>; OUTCOMES]; LISTENERS.len()],
    durations: [Histogram; LISTENERS.len()],
}

fn listener_index(l: Listener) -> usize {
    match l {
        Listener::Proxy => 0,
        Listener::ExtAuthzHttp => 1,
        Listener::ExtAuthzGrpc => 2,
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Allowed => 0,
        Outcome::Skipped => 1,
        Outcome::Unauthenticated => 2,
        Outcome::Forbidden => 3,
        Outcome::Error => 4,
    }
}

/// The IdP endpoints `authgate_idp_requests_total{endpoint}` distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpEndpoint {
    /// `/.well-known/openid-configuration`.
    Discovery,
    /// The JWKS (`jwks_uri`).
    Jwks,
    /// The token endpoint, code grant.
    Token,
    /// The token endpoint, refresh grant.
    Refresh,
    /// The userinfo endpoint.
    Userinfo,
}

impl IdpEndpoint {
    fn as_str(self) -> &'static str {
        match self {
            IdpEndpoint::Discovery => "discovery",
            IdpEndpoint::Jwks => "jwks",
            IdpEndpoint::Token => "token",
            IdpEndpoint::Refresh => "refresh",
            IdpEndpoint::Userinfo => "userinfo",
        }
    }
}

/// `authgate_sessions_total{event}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// A login created a session.
    Created,
    /// A session's tokens were refreshed.
    Refreshed,
    /// Sign-out, revocation or an ended refresh cleared one.
    Cleared,
    /// A cookie that did not open (tampered, old key, expired).
    Invalid,
}

impl SessionEvent {
    fn as_str(self) -> &'static str {
        match self {
            SessionEvent::Created => "created",
            SessionEvent::Refreshed => "refreshed",
            SessionEvent::Cleared => "cleared",
            SessionEvent::Invalid => "invalid",
        }
    }
}

/// `authgate_dependency_up{dependency}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The OpenID provider.
    Idp,
    /// The Redis session store.
    Redis,
}

impl Dependency {
    fn as_str(self) -> &'static str {
        match self {
            Dependency::Idp => "idp",
            Dependency::Redis => "redis",
        }
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    ///
    /// Errors: only if two metrics were registered under one name (a bug).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "authgate_requests_total",
                "Requests by listener and decision.",
            ),
            &["listener", "decision"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "authgate_request_duration_seconds",
                "Time spent deciding and answering, by listener.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ]),
            &["listener"],
        )?;
        let idp_requests = IntCounterVec::new(
            Opts::new(
                "authgate_idp_requests_total",
                "Calls to the identity provider.",
            ),
            &["endpoint", "outcome"],
        )?;
        let sessions = IntCounterVec::new(
            Opts::new("authgate_sessions_total", "Session lifecycle events."),
            &["event"],
        )?;
        let upstream_errors = IntCounter::new(
            "authgate_upstream_errors_total",
            "Requests that failed to reach the upstream.",
        )?;
        let dependency_up = IntGaugeVec::new(
            Opts::new(
                "authgate_dependency_up",
                "1 when the dependency answers, else 0.",
            ),
            &["dependency"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(idp_requests.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(dependency_up.clone()))?;
        let policy_decisions = IntCounterVec::new(
            Opts::new(
                "authgate_policy_decisions_total",
                "Requests a policy decided, by policy name and result (allowed, forbidden).",
            ),
            &["policy", "result"],
        )?;
        registry.register(Box::new(policy_decisions.clone()))?;
        // Families without observations are not rendered; touch the label
        // sets users alert on so dashboards see zeros, not gaps.
        let durations = LISTENERS.map(|l| duration.with_label_values(&[l.as_str()]));
        for e in [
            SessionEvent::Created,
            SessionEvent::Refreshed,
            SessionEvent::Cleared,
            SessionEvent::Invalid,
        ] {
            sessions.with_label_values(&[e.as_str()]);
        }
        Ok(Metrics {
            registry,
            requests,
            idp_requests,
            sessions,
            upstream_errors,
            dependency_up,
            policy_decisions,
            policy_names: Arc::default(),
            request_children: Arc::new(RequestChildren {
                counters: Default::default(),
                durations,
            }),
        })
    }

    /// Counts one request (`authgate_requests_total`) and its duration in seconds.
    pub fn request(&self, listener: Listener, outcome: Outcome, elapsed: Duration) {
        let l = listener_index(listener);
        let children = &self.request_children;
        children.counters[l][outcome_index(outcome)]
            .get_or_init(|| {
                self.requests
                    .with_label_values(&[listener.as_str(), outcome.as_str()])
            })
            .inc();
        children.durations[l].observe(elapsed.as_secs_f64());
    }

    /// Counts one IdP call (`authgate_idp_requests_total{endpoint,result}`).
    pub fn idp(&self, endpoint: IdpEndpoint, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.idp_requests
            .with_label_values(&[endpoint.as_str(), outcome])
            .inc();
    }

    /// Counts a session event (`authgate_sessions_total{event}`).
    pub fn session(&self, event: SessionEvent) {
        self.sessions.with_label_values(&[event.as_str()]).inc();
    }

    /// Counts an upstream that failed (`authgate_upstream_errors_total`).
    pub fn upstream_error(&self) {
        self.upstream_errors.inc();
    }

    /// Counts one policy decision
    /// (`authgate_policy_decisions_total{policy,result="allowed"|"forbidden"}`).
    pub fn policy(&self, policy: &str, allowed: bool) {
        let result = if allowed { "allowed" } else { "forbidden" };
        self.policy_decisions
            .with_label_values(&[policy, result])
            .inc();
    }

    /// Exports `authgate_policy_decisions_total{policy,result}` at zero for
    /// both results of every restrictive policy in `policies` (a `skip_auth`
    /// one decides nothing: no authentication, no result), so dashboards
    /// and alerts see the series before the first request; drops the
    /// series of policies no longer configured. Called whenever a config
    /// is loaded (start-up and each `SIGHUP` reload).
    pub fn policies_configured(&self, policies: &[crate::config::Policy]) {
        let names: Vec<String> = policies
            .iter()
            .filter(|p| !p.skip_auth)
            .map(|p| p.name.clone())
            .collect();
        let mut known = self.policy_names.lock();
        for gone in known.iter().filter(|n| !names.contains(n)) {
            for result in ["allowed", "forbidden"] {
                // Absent when never created: nothing to drop.
                let _ = self.policy_decisions.remove_label_values(&[gone, result]);
            }
        }
        for name in &names {
            for result in ["allowed", "forbidden"] {
                self.policy_decisions.with_label_values(&[name, result]);
            }
        }
        *known = names;
    }

    /// Sets `authgate_dependency_up{dependency}` to 1 or 0.
    pub fn dependency(&self, dep: Dependency, up: bool) {
        self.dependency_up
            .with_label_values(&[dep.as_str()])
            .set(i64::from(up));
    }

    /// Registers a family owned by another module (e.g. the config
    /// reload's counters) in this registry.
    ///
    /// # Errors
    /// A family of that name is already registered (a bug).
    pub fn register(
        &self,
        family: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(family)
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8192);
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_errors_exported_at_zero_from_start() {
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("authgate_upstream_errors_total 0"), "{text}");
    }

    fn policy(name: &str, skip_auth: bool) -> crate::config::Policy {
        crate::config::Policy {
            name: name.into(),
            hosts: vec![],
            paths: vec![],
            methods: vec![],
            skip_auth,
            allowed_groups: vec![],
            allowed_emails: vec![],
            email_domains: vec![],
            expression: None,
        }
    }

    #[test]
    fn configured_policies_are_exported_at_zero_and_follow_reloads() {
        let m = Metrics::new().unwrap();
        m.policies_configured(&[policy("admin", false), policy("health", true)]);
        let text = String::from_utf8(m.render()).unwrap();
        for result in ["allowed", "forbidden"] {
            let series =
                format!(r#"authgate_policy_decisions_total{{policy="admin",result="{result}"}} 0"#);
            assert!(text.contains(&series), "{series} in {text}");
        }
        assert!(!text.contains(r#"policy="health""#), "{text}");
        m.policy("admin", false);
        // A reload: `admin` renamed `admins`, `viewers` added.
        m.policies_configured(&[policy("admins", false), policy("viewers", false)]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(!text.contains(r#"policy="admin""#), "{text}");
        for name in ["admins", "viewers"] {
            for result in ["allowed", "forbidden"] {
                let series = format!(
                    r#"authgate_policy_decisions_total{{policy="{name}",result="{result}"}} 0"#
                );
                assert!(text.contains(&series), "{series} in {text}");
            }
        }
        // An unchanged reload keeps the counts.
        m.policy("viewers", true);
        m.policies_configured(&[policy("admins", false), policy("viewers", false)]);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(
                r#"authgate_policy_decisions_total{policy="viewers",result="allowed"} 1"#
            ),
            "{text}"
        );
    }

    #[test]
    fn requests_are_counted_by_listener_and_decision() {
        let m = Metrics::new().unwrap();
        m.request(
            Listener::Proxy,
            Outcome::Forbidden,
            Duration::from_millis(1),
        );
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains(r#"authgate_requests_total{decision="forbidden",listener="proxy"} 1"#),
            "{text}"
        );
    }
}
