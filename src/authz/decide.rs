//! `Gate::decide`: the one decision. Called by the proxy's `request_filter`,
//! the ext_authz HTTP check and the ext_authz gRPC check; it never blocks,
//! never panics and never logs a token.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};

use super::policy::{self, Selection, Subject, Target};
use super::{browser, path, rules, Decision, Endpoint, Grant, Outcome, Reply, RequestView};
use crate::clock::unix_now;
use crate::config::Authorization;
use crate::domain::Secret;
use crate::endpoints::pages;
use crate::gate::Gate;
use crate::metrics::SessionEvent;
use crate::oidc::OidcError;
use crate::session::cookies::CookieJar;
use crate::session::store::StoreError;
use crate::session::TokenUse;

/// Who the request turned out to be, before authorization.
pub enum Authn {
    /// A verified bearer JWT or a valid session.
    Identified(Grant),
    /// No or invalid credentials. `bearer_error` is set when a bearer token
    /// was presented and refused (then the answer is 401, never a login).
    Anonymous {
        /// Cookies to clear (an ended session).
        set_cookies: Vec<HeaderValue>,
        /// RFC 6750 `error` for a refused bearer token.
        bearer_error: Option<&'static str>,
    },
    /// A dependency (IdP or Redis) needed to tell is down.
    Unavailable(Reply),
}

impl Gate {
    /// The decision for one request on any listener: authgate's own
    /// endpoints (as [`Endpoint::resolve`] routed them for the listener),
    /// else skip, allow, login redirect, 401 or 403 for the app's request.
    /// `/oauth2/backchannel_logout` needs the body: the proxy serves it
    /// through [`Gate::backchannel_logout`] and never asks here.
    pub async fn decide(&self, req: &RequestView<'_>) -> Decision {
        if let Some(endpoint) = req.endpoint {
            return Decision::Reply(self.serve(endpoint, req).await);
        }
        let rules = &self.cfg.authorization;
        let Before::Authenticate(selection) = self.before_authentication(req) else {
            return Decision::Skip;
        };
        match self.authenticate(req).await {
            Authn::Identified(mut grant) => {
                crate::access_log::note_user(&grant.identity.user);
                match self.authorize(req, &selection, &grant) {
                    Ok(()) => {
                        grant.assertion = self.assertion_for(&grant, req.host);
                        Decision::Allow(grant)
                    }
                    Err(mut reply) => {
                        append_cookies(&mut reply, grant.set_cookies);
                        Decision::Reply(reply)
                    }
                }
            }
            Authn::Anonymous {
                set_cookies,
                bearer_error,
            } => {
                let mut reply = if let Some(err) = bearer_error {
                    pages::bearer_unauthorized(err)
                } else if path::any_matches(&rules.api_routes, req.path)
                    || !browser::is_browser(req.headers)
                {
                    pages::unauthorized()
                } else {
                    self.login_redirect(req, None).await
                };
                append_cookies(&mut reply, set_cookies);
                Decision::Reply(reply)
            }
            Authn::Unavailable(reply) => Decision::Reply(reply),
        }
    }

    /// Answers one of authgate's own endpoints.
    async fn serve(&self, endpoint: Endpoint, req: &RequestView<'_>) -> Reply {
        match endpoint {
            Endpoint::Ping => pages::text(StatusCode::OK, Outcome::Skipped, "OK"),
            Endpoint::Ready if self.is_ready() => {
                pages::text(StatusCode::OK, Outcome::Skipped, "OK")
            }
            Endpoint::Ready => pages::text(
                StatusCode::SERVICE_UNAVAILABLE,
                Outcome::Skipped,
                "not ready",
            ),
            // oauth2-proxy's sign-in page with one provider and
            // `skip-provider-button`: straight to the IdP, `rd` kept.
            Endpoint::Start | Endpoint::SignIn => self.start(req).await,
            // Boxed: the code exchange's future is ~5.5 KB, four times the
            // rest of `decide`'s; inline, every proxied request's future
            // would carry it and Pingora copies that future into a box.
            Endpoint::Callback => Box::pin(self.callback(req)).await,
            Endpoint::SignOut => self.sign_out(req).await,
            Endpoint::Auth => self.auth_check(req).await,
            Endpoint::Userinfo => self.userinfo(req).await,
            Endpoint::Jwks => self.jwks(),
            // Only reachable if a front end forgot the body.
            Endpoint::BackchannelLogout => pages::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                Outcome::Error,
                "Internal error\n",
            ),
        }
    }

    /// Establishes who the request is: a bearer JWT, else the session cookie
    /// (refreshed when due). A refused JWT falls back to the cookie (an app
    /// may send its own bearer tokens alongside the session), and without
    /// one it is a 401, never a login redirect. Used by `decide`,
    /// `/oauth2/auth` and `/oauth2/userinfo`.
    pub async fn authenticate(&self, req: &RequestView<'_>) -> Authn {
        let mut bearer_error = None;
        if self.cfg.authorization.bearer_tokens {
            if let Some(token) = bearer_jwt(req.headers) {
                match self.provider.verify_bearer_claims(token).await {
                    Ok(bearer) => {
                        // Shared with every request presenting this token
                        // while it is cached: `Arc` clones, no copies.
                        let claims = self.cfg.policies.need_claims.then(|| {
                            bearer.policy_claims(|c| {
                                policy::session_claims(true, c.clone())
                                    .map(|c| Arc::new(c.into_inner()))
                            })
                        });
                        return Authn::Identified(Grant {
                            sub: bearer.sub.clone(),
                            claims: claims.flatten(),
                            assertion: None,
                            identity: bearer.identity.clone(),
                            id_token: self
                                .cfg
                                .headers
                                .pass_authorization
                                .then(|| bearer.token.clone()),
                            access_token: None,
                            set_cookies: Vec::new(),
                        });
                    }
                    Err(OidcError::NotReady) => return Authn::Unavailable(pages::idp_not_ready()),
                    Err(e) if e.is_unavailable() => {
                        return Authn::Unavailable(pages::idp_unavailable())
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "bearer token refused");
                        bearer_error = Some("invalid_token");
                    }
                }
            }
        }
        let jar = CookieJar::from_headers(req.headers);
        let now = unix_now();
        let uses = TokenUse {
            id_token: self.cfg.headers.pass_authorization,
            access_token: self.cfg.headers.pass_access_token,
            refresh: self.cfg.cookie.refresh,
        };
        let (session, ticket) = match self.store.load_for(&jar, uses, now).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Authn::Anonymous {
                    set_cookies: Vec::new(),
                    bearer_error,
                }
            }
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "session store unavailable");
                return Authn::Unavailable(pages::store_unavailable());
            }
        };
        if !session.needs_refresh(now, self.cfg.cookie.refresh) {
            // Sealed with a previous cookie secret: re-sealed on this response.
            let resealed = self
                .store
                .reseal_if_stale(session.expires_at, req.host, &jar);
            return Authn::Identified(self.grant(session, resealed));
        }
        match self.refresh_once(&session).await {
            Ok(fresh) => {
                self.metrics.session(SessionEvent::Refreshed);
                let set_cookies = match self
                    .store
                    .save(&fresh, ticket.as_ref(), req.host, &jar)
                    .await
                {
                    Ok(c) => c,
                    Err(StoreError::Unavailable(e)) => {
                        tracing::warn!(error = %e, "could not store refreshed session");
                        return Authn::Unavailable(pages::store_unavailable());
                    }
                };
                Authn::Identified(self.grant(Arc::unwrap_or_clone(fresh), set_cookies))
            }
            Err(e) if matches!(*e, OidcError::InvalidGrant) => {
                // Another replica may have won the refresh and rotated the
                // token: its stored session is the live one.
                if let Some(t) = &ticket {
                    if let Ok(Some(current)) = self.store.reload(t).await {
                        if current.refresh_token != session.refresh_token
                            && !current.is_expired(now)
                        {
                            return Authn::Identified(self.grant(current, Vec::new()));
                        }
                    }
                }
                // The IdP ended the session (revoked or expired refresh token).
                let set_cookies = self
                    .store
                    .clear(ticket.as_ref(), req.host, &jar)
                    .await
                    .unwrap_or_default();
                // A JWT refused above still decides the answer: 401 with
                // `invalid_token`, never a login redirect.
                Authn::Anonymous {
                    set_cookies,
                    bearer_error,
                }
            }
            Err(e) => {
                // The session is still valid; serve it and retry later.
                tracing::warn!(error = %e, "session refresh failed; keeping the current session");
                Authn::Identified(self.grant(session, Vec::new()))
            }
        }
    }
}

impl Gate {
    /// Tokens are kept only when a header will carry them upstream.
    fn grant(&self, session: crate::session::Session, set_cookies: Vec<HeaderValue>) -> Grant {
        let h = &self.cfg.headers;
        Grant {
            sub: Arc::from(session.sub),
            claims: session.claims.map(|c| Arc::new(c.into_inner())),
            assertion: None,
            identity: session.identity,
            id_token: session
                .id_token
                .filter(|_| h.pass_authorization)
                .map(|t| Secret::new(Arc::from(t.into_inner()))),
            access_token: session
                .access_token
                .filter(|_| h.pass_access_token)
                .map(|t| Secret::new(Arc::from(t.into_inner()))),
            set_cookies,
        }
    }
}

/// What the rules say about a request before anyone is identified.
pub(crate) enum Before<'g> {
    /// `skip_auth_routes`, a preflight with `skip_preflight`, or a
    /// `skip_auth` policy: no authentication.
    Skip,
    /// Authenticate; then these policies apply (besides `authorization`).
    Authenticate(Selection<'g>),
}

impl Gate {
    /// `skip_auth_routes` first, then the first matching policy, for the
    /// request (or the original request a trusted forward-auth caller
    /// reports to `/oauth2/auth`). Nothing is skipped for `/oauth2/auth`
    /// without an original request, nor when its reporting headers
    /// disagree. The one rule for every front end and `/oauth2/auth`.
    pub(crate) fn before_authentication(&self, req: &RequestView<'_>) -> Before<'_> {
        let may_skip = match &req.original {
            Some(o) => !o.conflicting,
            None => req.endpoint != Some(Endpoint::Auth),
        };
        if may_skip {
            let view = req.original.map_or(*req, |o| o.view(req));
            if skips_authentication(&self.cfg.authorization, &view) {
                return Before::Skip;
            }
        }
        match policy::select(&self.cfg.policies.list, &Target::of(req)) {
            Selection::Skip(_) if may_skip => Before::Skip,
            Selection::Skip(_) => Before::Authenticate(Selection::None),
            s => Before::Authenticate(s),
        }
    }

    /// Allowed = `authorization` passes and every condition of the
    /// selected policies does; else the 403 (naming the policy that
    /// denied). Counts `authgate_policy_decisions_total`.
    pub(crate) fn authorize(
        &self,
        req: &RequestView<'_>,
        selection: &Selection<'_>,
        grant: &Grant,
    ) -> Result<(), Reply> {
        if !rules::authorized(&grant.identity, &self.cfg.authorization) {
            return Err(self.forbidden(req, &grant.identity));
        }
        let Selection::Apply(list) = selection else {
            return Ok(());
        };
        let who = Subject {
            identity: &grant.identity,
            claims: grant.claims.as_deref(),
        };
        let target = Target::of(req);
        for p in list {
            let allowed = policy::evaluate(p, who, &target).iter().all(|c| c.passed);
            self.metrics.policy(&p.name, allowed);
            if !allowed {
                return Err(self.forbidden_by_policy(req, &grant.identity, &p.name));
            }
        }
        Ok(())
    }

    /// The signed identity assertion for an allowed `grant` on `host`,
    /// when `assertion` is on (cached per identity and audience).
    pub(crate) fn assertion_for(&self, grant: &Grant, host: &str) -> Option<HeaderValue> {
        self.assertion.as_ref()?.assertion(grant, host, unix_now())
    }

    /// What a new session keeps of the verified claims (only what
    /// policies need: see `policies.need_claims`).
    pub(crate) fn session_claims(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
    ) -> Option<Secret<serde_json::Map<String, serde_json::Value>>> {
        policy::session_claims(self.cfg.policies.need_claims, claims)
    }
}

/// Whether `req` goes through without authentication: it matches
/// `skip_auth_routes` (method and normalised path) and is not ambiguous, or
/// it is a CORS preflight and `skip_preflight` is on. The one rule for the
/// proxy's requests, the ext_authz checks and the original request a
/// forward-auth caller asks `/oauth2/auth` about.
pub(crate) fn skips_authentication(rules: &Authorization, req: &RequestView<'_>) -> bool {
    // A target servers may read differently (`..;`, `%2F`, ...) never skips auth.
    let route = !path::is_ambiguous(req.uri)
        && path::route_matches(&rules.skip_auth_routes, req.method, req.path);
    route || (rules.skip_preflight && browser::is_preflight(req.method, req.headers))
}

/// `Authorization: Bearer <JWT>`. Other schemes and opaque tokens (an app's
/// own API keys) are not ours to judge, as in oauth2-proxy.
fn bearer_jwt(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    let mut parts = token.split('.');
    let jwt_shaped =
        parts.by_ref().take(3).filter(|p| !p.is_empty()).count() == 3 && parts.next().is_none();
    jwt_shaped.then_some(token)
}

pub(crate) fn append_cookies(reply: &mut Reply, cookies: Vec<HeaderValue>) {
    reply
        .headers
        .extend(cookies.into_iter().map(|c| (http::header::SET_COOKIE, c)));
}

impl Reply {
    /// An empty reply with `Cache-Control: no-store`. A 401 also carries
    /// the plain `Bearer` challenge ([`pages::challenge`]): RFC 9110
    /// §15.5.2 requires a `WWW-Authenticate` on every 401, and every reply
    /// authgate builds starts here. [`pages::set_challenge`] swaps in
    /// `error="invalid_token"` for a refused JWT.
    pub fn new(status: StatusCode, outcome: Outcome) -> Self {
        let mut headers = vec![(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        )];
        if status == StatusCode::UNAUTHORIZED {
            headers.push((http::header::WWW_AUTHENTICATE, pages::challenge(None)));
        }
        Reply {
            status,
            headers,
            body: bytes::Bytes::new(),
            outcome,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jwt_shaped_bearer_tokens_are_ours() {
        let mut h = http::HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer a.b.c"));
        assert_eq!(bearer_jwt(&h), Some("a.b.c"));
        h.insert("authorization", HeaderValue::from_static("bearer  a.b.c "));
        assert_eq!(bearer_jwt(&h), Some("a.b.c"));
        for other in [
            "Basic dXNlcjpwYXNz",
            "Bearer ",
            "Bearer glsa_opaque",
            "Bearer a..c",
            "Bearer a.b.c.d",
        ] {
            h.insert("authorization", HeaderValue::from_static(other));
            assert_eq!(bearer_jwt(&h), None, "{other}");
        }
    }

    use crate::authz::Listener;
    use crate::testkit::{self, Kit};

    /// A JWT in shape only: three non-empty parts no issuer signed.
    const FORGED_JWT: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vIn0.eyJzdWIiOiJhbGljZSJ9.c2ln";

    async fn decide(kit: &Kit, headers: &[(&'static str, &str)]) -> Decision {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        let req = testkit::admitted(Listener::Proxy, "/app", &h);
        kit.gate.decide(&req.view()).await
    }

    /// Pingora boxes `request_filter`'s future on every request, copying
    /// its whole size, and `decide`'s is most of it: rare branches with
    /// large futures (the code exchange, ~5.5 KB) stay boxed (~1.5 KB now).
    #[tokio::test]
    async fn the_decision_future_stays_small() {
        let kit = testkit::kit("").await;
        let h = http::HeaderMap::new();
        let req = testkit::admitted(Listener::Proxy, "/app", &h);
        let view = req.view();
        let size = std::mem::size_of_val(&kit.gate.decide(&view));
        assert!(size <= 2560, "decide's future is {size} bytes");
    }

    fn reply(d: Decision) -> Reply {
        match d {
            Decision::Reply(r) => r,
            other => panic!("not a reply: {:?}", other.outcome()),
        }
    }

    fn header<'r>(r: &'r Reply, name: &str) -> Vec<&'r str> {
        r.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_refused_jwt_beside_a_valid_session_uses_the_session() {
        let kit = testkit::kit("").await;
        let alice = kit.session_cookie("alice").await;
        let bearer = format!("Bearer {FORGED_JWT}");
        let d = decide(
            &kit,
            &[
                ("authorization", &bearer),
                ("cookie", &alice),
                ("accept", "text/html"),
            ],
        )
        .await;
        let Decision::Allow(grant) = d else {
            panic!("not allowed: {:?}", d.outcome());
        };
        assert_eq!(grant.identity.email, "alice@example.com");
        // The refused token is not passed on as if it were hers.
        assert!(grant.id_token.is_none());
    }

    #[tokio::test]
    async fn a_refused_jwt_without_a_session_is_401_invalid_token_even_for_a_browser() {
        let kit = testkit::kit("").await;
        let bearer = format!("Bearer {FORGED_JWT}");
        for accept in ["text/html,application/xhtml+xml", "application/json"] {
            let r = reply(decide(&kit, &[("authorization", &bearer), ("accept", accept)]).await);
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{accept}");
            assert_eq!(
                header(&r, "www-authenticate"),
                [r#"Bearer realm="authgate", error="invalid_token""#],
                "{accept}"
            );
            assert!(header(&r, "location").is_empty());
        }
    }

    #[tokio::test]
    async fn an_opaque_bearer_is_not_ours_so_a_browser_without_a_session_goes_to_login() {
        let kit = testkit::kit("").await;
        let r = reply(
            decide(
                &kit,
                &[("authorization", "Bearer glsa_x"), ("accept", "text/html")],
            )
            .await,
        );
        assert_eq!(r.status, StatusCode::FOUND);
        assert!(header(&r, "location")[0].starts_with(&kit.issuer));
        assert!(header(&r, "www-authenticate").is_empty());
        // And with a session, the session decides.
        let alice = kit.session_cookie("alice").await;
        let d = decide(
            &kit,
            &[("authorization", "Bearer glsa_x"), ("cookie", &alice)],
        )
        .await;
        assert!(matches!(d, Decision::Allow(_)), "{:?}", d.outcome());
    }
}
