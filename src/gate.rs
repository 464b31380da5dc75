//! The shared state every front end decides with: configuration, the IdP,
//! the session store, metrics. Built once at start-up, shared by `Arc`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;

use crate::authz::headers::IdentityHeaders;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::oidc::{OidcError, Provider};
use crate::proxy::Upstreams;
use crate::session::codec::SessionCodec;
use crate::session::redis::RedisError;
use crate::session::store::SessionStore;
use crate::session::Session;

/// How long a login flow (its state, nonce and CSRF cookie) stays valid.
pub const FLOW_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a finished refresh answers for the refresh token it consumed.
pub const REFRESH_REUSE: Duration = Duration::from_secs(60);
/// How long a failed refresh is remembered before the next attempt.
pub const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// Why the gate could not be built at start-up.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The relying party could not be set up (HTTP client, CA file).
    #[error(transparent)]
    Oidc(#[from] OidcError),
    /// The Redis session store could not be set up.
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Redeemed callback states, oldest first, so expiry is a pop from the
/// front and the memory is capped whatever the callback rate.
#[derive(Default)]
struct UsedStates {
    order: VecDeque<(Instant, String)>,
    seen: HashSet<String>,
}

/// Past this many, the oldest are forgotten early; their flows' codes are
/// single-use at the IdP anyway.
const MAX_USED_STATES: usize = 100_000;

impl UsedStates {
    fn consume(&mut self, state: &str, now: Instant) -> bool {
        while let Some((at, _)) = self.order.front() {
            if now.duration_since(*at) < FLOW_TTL && self.order.len() < MAX_USED_STATES {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        if !self.seen.insert(state.to_owned()) {
            return false;
        }
        self.order.push_back((now, state.to_owned()));
        true
    }
}

/// The result of one refresh, shared by every request that waited on it.
pub type RefreshResult = Result<Arc<Session>, Arc<OidcError>>;
type SharedRefresh = Shared<BoxFuture<'static, RefreshResult>>;

/// The shared state every front end decides with (see the module doc).
pub struct Gate {
    /// The validated configuration.
    pub cfg: Arc<Config>,
    /// The OpenID provider (relying party side).
    pub provider: Arc<Provider>,
    /// Where sessions live (cookie or Redis).
    pub store: Arc<SessionStore>,
    /// Seals and opens sessions.
    pub codec: Arc<SessionCodec>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The identity header policy.
    pub headers: IdentityHeaders,
    /// Signs the identity assertion (`assertion`), when on; built from
    /// this configuration, so a reload re-reads the key.
    pub assertion: Option<crate::authz::assertion::Signer>,
    /// The proxy's routes and their upstream addresses (held here so one
    /// swap changes rules and routes together).
    pub upstreams: Upstreams,
    // The state below is shared by every generation of the gate: a reload
    // keeps pending logins, used states, in-flight refreshes and draining.
    /// Callback `state`s already redeemed, until their flow would expire.
    used_states: Arc<Mutex<UsedStates>>,
    /// Long post-login targets of pending flows, and where spent flows landed.
    pub(crate) pending: Arc<crate::endpoints::pending::PendingTargets>,
    /// In-flight refreshes by refresh token: one IdP call per session.
    /// Finished ones are kept for [`REFRESH_REUSE`] so requests still
    /// carrying the old cookie reuse the result instead of replaying a
    /// rotated refresh token.
    refreshes: Arc<Mutex<HashMap<String, (Instant, SharedRefresh)>>>,
    draining: Arc<AtomicBool>,
}

impl Gate {
    /// Builds the gate for `cfg`. No network I/O: discovery and Redis
    /// connections happen in the background upkeep.
    pub fn new(cfg: Arc<Config>, metrics: Metrics) -> Result<Arc<Self>, GateError> {
        Self::assemble(cfg, metrics, None).map(Arc::new)
    }

    /// The gate for a reloaded `cfg`, keeping this one's state: the session
    /// store's Redis connection, pending logins, used states, in-flight
    /// refreshes, resolved upstream addresses, and the provider (its
    /// discovery and JWKS) when the provider settings are unchanged. The
    /// caller has already kept the settings that need a restart.
    ///
    /// # Errors
    /// As [`Gate::new`] (a changed provider whose CA file cannot be read).
    pub fn reloaded(&self, cfg: Arc<Config>) -> Result<Gate, GateError> {
        Self::assemble(cfg, self.metrics.clone(), Some(self))
    }

    /// Whether `self` and `other` talk to the IdP the same way (then a
    /// reload keeps the discovered provider).
    pub fn same_provider(&self, other: &Config) -> bool {
        self.cfg.provider == other.provider
            && self.cfg.authorization.extra_jwt_issuers == other.authorization.extra_jwt_issuers
    }

    fn assemble(
        cfg: Arc<Config>,
        metrics: Metrics,
        prev: Option<&Gate>,
    ) -> Result<Gate, GateError> {
        let provider = match prev {
            Some(p) if p.same_provider(&cfg) => p.provider.clone(),
            _ => Arc::new(Provider::new(
                &cfg.provider,
                &cfg.authorization.extra_jwt_issuers,
                metrics.clone(),
            )?),
        };
        let previous: Vec<&[u8]> = cfg
            .cookie
            .previous_secrets
            .iter()
            .map(|s| s.expose().as_slice())
            .collect();
        let codec = Arc::new(SessionCodec::with_previous(
            cfg.cookie.secret.expose(),
            &previous,
        ));
        let store = match prev {
            Some(p) => Arc::new(p.store.reconfigured(&cfg, codec.clone())),
            None => Arc::new(SessionStore::new(&cfg, codec.clone(), metrics.clone())?),
        };
        let upstreams = Upstreams::new(&cfg.upstreams, prev.map(|p| &p.upstreams));
        // Start-up and every reload: the policy series exist at zero.
        metrics.policies_configured(&cfg.policies.list);
        Ok(Gate {
            headers: IdentityHeaders::new(&cfg.headers)
                .with_assertion(cfg.assertion.as_ref().map(|a| &a.header)),
            assertion: cfg
                .assertion
                .as_ref()
                .map(crate::authz::assertion::Signer::new),
            upstreams,
            cfg,
            provider,
            store,
            codec,
            metrics,
            used_states: prev.map_or_else(Default::default, |p| p.used_states.clone()),
            pending: prev.map_or_else(Default::default, |p| p.pending.clone()),
            refreshes: prev.map_or_else(Default::default, |p| p.refreshes.clone()),
            draining: prev.map_or_else(Default::default, |p| p.draining.clone()),
        })
    }

    /// `/ready`: the provider discovered with keys, Redis answering (when
    /// used), and not shutting down.
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Acquire)
            && self.provider.is_ready()
            && self.store.redis().is_none_or(|r| r.is_up())
    }

    /// SIGTERM: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Marks a callback `state` used; false when it already was.
    pub(crate) fn consume_state(&self, state: &str) -> bool {
        self.used_states.lock().consume(state, Instant::now())
    }

    /// Refreshes a session's tokens, once for all concurrent requests of
    /// that session (also across the ext_authz front ends).
    pub(crate) async fn refresh_once(&self, session: &Session) -> RefreshResult {
        let Some(rt) = session.refresh_token.as_ref().map(|t| t.expose().clone()) else {
            return Err(Arc::new(OidcError::InvalidGrant));
        };
        let fut = {
            let mut inflight = self.refreshes.lock();
            let now = Instant::now();
            inflight.retain(|_, (at, f)| match f.peek() {
                None => true,
                Some(Ok(_)) => now.duration_since(*at) < REFRESH_REUSE,
                // A failed refresh is retried soon, not hammered per request.
                Some(Err(_)) => now.duration_since(*at) < REFRESH_RETRY,
            });
            // A finished refresh is reused only by sessions older than its
            // result: with a refresh token the IdP does not rotate, the
            // refreshed session itself becomes due again under the same key
            // and must reach the IdP (which may have revoked it meanwhile).
            let reusable = inflight.get(&rt).filter(|(_, f)| match f.peek() {
                Some(Ok(done)) => done.refreshed_at > session.refreshed_at,
                _ => true,
            });
            if let Some((_, f)) = reusable {
                f.clone()
            } else {
                let provider = self.provider.clone();
                let keep_claims = self.cfg.policies.need_claims;
                let store = self.store.clone();
                let old = session.clone();
                let token = rt.clone();
                let f = async move {
                    // One grant across every replica sharing the store, too.
                    let prev = old.clone();
                    let redeem = async move {
                        let old = prev;
                        let login = provider.refresh(&token).await?;
                        let now = crate::clock::unix_now();
                        Ok(Session {
                            identity: Arc::new(login.identity),
                            sub: if login.sub.is_empty() {
                                old.sub
                            } else {
                                login.sub
                            },
                            sid: login.sid.or(old.sid),
                            id_token: login.id_token.or(old.id_token),
                            access_token: login.access_token.or(old.access_token),
                            refresh_token: login.refresh_token,
                            refreshed_at: now,
                            claims: crate::authz::policy::session_claims(keep_claims, login.claims)
                                .or(old.claims),
                            expires_at: old.expires_at,
                        })
                    };
                    store
                        .refresh_single_flight(&old, redeem)
                        .await
                        .map(Arc::new)
                        .map_err(Arc::new)
                }
                .boxed()
                .shared();
                inflight.insert(rt, (now, f.clone()));
                f
            }
        };
        fut.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_single_use_until_its_flow_expires() {
        let mut used = UsedStates::default();
        let t0 = Instant::now();
        assert!(used.consume("a", t0));
        assert!(!used.consume("a", t0 + Duration::from_secs(60)));
        assert!(used.consume("b", t0));
        // Forgotten once the flow itself could no longer be completed.
        assert!(used.consume("a", t0 + FLOW_TTL + Duration::from_secs(1)));
    }

    #[test]
    fn used_states_are_capped() {
        let mut used = UsedStates::default();
        let t0 = Instant::now();
        for i in 0..MAX_USED_STATES + 10 {
            assert!(used.consume(&i.to_string(), t0));
        }
        assert!(used.order.len() <= MAX_USED_STATES);
        assert_eq!(used.order.len(), used.seen.len());
    }
}
