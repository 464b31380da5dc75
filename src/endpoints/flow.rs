//! The login flow: `/oauth2/start` (and every login redirect) and
//! `/oauth2/callback`. Each flow has its own state, nonce, PKCE verifier and
//! CSRF cookie (`NAME_csrf_<state prefix>`), so parallel logins in one
//! browser do not overwrite each other.

use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::pending::Ended;
use super::{pages, query_param};
use crate::authz::decide::append_cookies;
use crate::authz::{redirect, rules, Outcome, Reply, RequestView};
use crate::clock::unix_now;
use crate::domain::{Identity, Secret};
use crate::gate::{Gate, FLOW_TTL};
use crate::metrics::SessionEvent;
use crate::oidc::client::AuthFlow;
use crate::oidc::OidcError;
use crate::session::cookies::{clear_cookie, set_cookie, CookieAttrs, CookieJar};
use crate::session::store::StoreError;
use crate::session::Session;

/// How much of the state names the flow's cookie: enough to tell flows apart.
const FLOW_ID_LEN: usize = 16;
/// Post-login targets up to this many bytes ride inline in the flow cookie;
/// longer ones wait server-side ([`super::pending`]), so one flow's cookie
/// stays under 1,000 bytes whatever the URL. 400 bytes keeps most dashboard
/// URLs (Grafana's `/d/uid/name?orgId=..&from=..&var-..`) in the cookie, so
/// they land whole even when the callback reaches another replica.
pub const INLINE_TARGET_MAX: usize = 400;
/// The longest post-login target kept whole (bytes); a longer one is cut to
/// its path (logged, lengths only), never a failed login.
pub const MAX_TARGET: usize = 16 * 1024;
/// Pending flows one browser holds at most: starting another clears the
/// oldest, so a browser restoring many tabs keeps its `Cookie` header
/// under nginx's and Envoy's 8 KiB line (under 4,000 bytes of flow cookies).
pub const MAX_PENDING_FLOWS: usize = 4;
/// Stale flow cookies cleared in one answer at most.
const MAX_CLEARS: usize = 16;

/// What the CSRF cookie carries, sealed and bound to its own name. The
/// nonce and PKCE verifier serialise as plain strings (the cookie format is
/// unchanged) but never print.
#[derive(Serialize, Deserialize)]
struct Flow {
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "n")]
    nonce: Secret<String>,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    verifier: Option<Secret<String>>,
    /// The validated post-login target; with `stored`, its path, where the
    /// login lands when the stored target is gone.
    #[serde(rename = "r")]
    target: String,
    /// The key of a long target kept server-side.
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    stored: Option<String>,
    #[serde(rename = "u")]
    redirect_uri: String,
    #[serde(rename = "e")]
    expires_at: u64,
    /// When the flow started (Unix µs): which of a browser's flows is the
    /// oldest when several start within one second. 0 in older cookies.
    #[serde(rename = "t", default)]
    started_us: u64,
    /// The callback refused the account: the cookie only marks this browser
    /// as the one that finished the flow, so a reload starts over.
    #[serde(rename = "x", default, skip_serializing_if = "is_false")]
    spent: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

fn random_token() -> String {
    crate::domain::random::token(32)
}

/// What `random_token` produces: 43 base64url characters.
fn is_state(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The CSRF cookie of the flow with this `state`: `NAME_csrf_<first 16
/// characters of state>`.
pub fn flow_cookie_name(cookie_name: &str, state: &str) -> String {
    let id: String = state.chars().take(FLOW_ID_LEN).collect();
    format!("{cookie_name}_csrf_{id}")
}

/// `target` without its query and fragment (scheme, host and path kept);
/// `/` when even that is longer than `max`.
fn cut_to_path(target: &str, max: usize) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    match &target[..end] {
        "" => "/".to_owned(),
        p if p.len() > max => "/".to_owned(),
        p => p.to_owned(),
    }
}

/// The "sign in with another account" link: a fresh login back to
/// `target` with `prompt=login`, so the IdP asks for credentials instead of
/// reusing its single sign-on session.
fn another_account_url(target: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", target)
        .append_pair("prompt", "login")
        .finish();
    format!("/oauth2/start?{query}")
}

impl Gate {
    /// The post-login target: `rd`, else `X-Auth-Request-Redirect`, else the
    /// request itself; anything unsafe becomes `/`.
    fn target(&self, req: &RequestView<'_>, rd: Option<&str>) -> String {
        let original;
        let wanted = match rd.filter(|r| !r.is_empty()) {
            Some(r) => r,
            None => match req
                .headers
                .get("x-auth-request-redirect")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
            {
                Some(h) => h,
                None => {
                    original = format!("{}://{}{}", req.scheme, req.host, req.uri);
                    &original
                }
            },
        };
        redirect::validate(wanted, req.host, &self.cfg.redirect.allowed_domains).into_owned()
    }

    fn flow_attrs(&self, host: &str) -> CookieAttrs {
        let mut attrs = CookieAttrs::for_request(&self.cfg.cookie, host);
        attrs.max_age = Some(FLOW_TTL);
        // The callback is a cross-site top-level GET from the IdP: a Strict
        // CSRF cookie would never come back with it.
        if attrs.same_site == crate::config::SameSite::Strict {
            attrs.same_site = crate::config::SameSite::Lax;
        }
        attrs
    }

    fn open_flow(&self, name: &str, raw: &str) -> Option<Flow> {
        let plain = self.codec.open(name.as_bytes(), raw).ok()?;
        serde_json::from_slice::<Flow>(&plain).ok()
    }

    fn flow_cookie(&self, name: &str, flow: &Flow, host: &str) -> Option<HeaderValue> {
        let json = serde_json::to_vec(flow).ok()?;
        let sealed = self.codec.seal(name.as_bytes(), &json);
        HeaderValue::from_str(&set_cookie(name, &sealed, &self.flow_attrs(host))).ok()
    }

    /// Where a flow's target lives: inline when short, else server-side
    /// with its path inline as the fallback. Over [`MAX_TARGET`] it is cut
    /// to its path first.
    async fn place_target(&self, target: String) -> (String, Option<String>) {
        let target = if target.len() > MAX_TARGET {
            tracing::info!(
                length = target.len(),
                max = MAX_TARGET,
                "post-login target too long; the login lands on its path"
            );
            cut_to_path(&target, MAX_TARGET)
        } else {
            target
        };
        if target.len() <= INLINE_TARGET_MAX {
            return (target, None);
        }
        let key = self
            .pending
            .put(&target, &self.codec, self.store.redis())
            .await;
        (cut_to_path(&target, INLINE_TARGET_MAX), Some(key))
    }

    /// A flow's target: inline, or fetched back from where it waited; its
    /// path when that is gone (another replica without Redis, a restart).
    async fn flow_target(&self, flow: &Flow) -> String {
        let Some(key) = &flow.stored else {
            return flow.target.clone();
        };
        match self.pending.get(key, &self.codec, self.store.redis()).await {
            Some(t) => t,
            None => {
                tracing::info!(
                    "the pending post-login target is no longer held; the login lands on its path"
                );
                flow.target.clone()
            }
        }
    }

    /// `Set-Cookie` clears for this browser's flow cookies that must go
    /// before one more starts: unreadable or expired ones, spent markers,
    /// and the oldest live ones beyond [`MAX_PENDING_FLOWS`] - 1.
    fn evict_flows(&self, jar: &CookieJar<'_>, host: &str) -> Vec<HeaderValue> {
        let prefix = format!("{}_csrf", self.cfg.cookie.name);
        let now = unix_now();
        let mut live: Vec<(&str, Flow)> = Vec::new();
        let mut clear: Vec<&str> = Vec::new();
        for (name, raw) in jar.iter().filter(|(n, _)| n.starts_with(&prefix)) {
            match self.open_flow(name, raw) {
                Some(f) if f.expires_at > now && !f.spent => live.push((name, f)),
                _ => clear.push(name),
            }
        }
        // Oldest first. `expires_at` is in whole seconds: flows started in
        // the same second (restored tabs) would tie and evict in any order.
        live.sort_unstable_by_key(|(_, f)| (f.expires_at, f.started_us));
        let excess = (live.len() + 1).saturating_sub(MAX_PENDING_FLOWS);
        for (name, f) in live.iter().take(excess) {
            // Its callback may still come (a tab still at the IdP): it then
            // starts over toward the same target instead of failing.
            self.pending
                .remember(Ended::Evicted, &f.state, &f.target, f.stored.as_deref());
            clear.push(name);
        }
        clear.sort_unstable();
        clear.dedup();
        let attrs = self.flow_attrs(host);
        clear
            .into_iter()
            .take(MAX_CLEARS)
            .filter_map(|n| HeaderValue::from_str(&clear_cookie(n, &attrs)).ok())
            .collect()
    }

    /// 302 to the IdP with a fresh flow and its CSRF cookie; the target is
    /// `rd`, else `X-Auth-Request-Redirect`, else the request itself.
    pub(crate) async fn login_redirect(&self, req: &RequestView<'_>, rd: Option<&str>) -> Reply {
        let target = self.target(req, rd);
        self.begin_login(req, target, None).await
    }

    /// 302 to the IdP for `target` (already validated), with a fresh state,
    /// nonce and PKCE verifier in a new flow cookie; `prompt` is passed to
    /// the IdP (`login`). Clears what [`Gate::evict_flows`] names.
    async fn begin_login(
        &self,
        req: &RequestView<'_>,
        target: String,
        prompt: Option<&str>,
    ) -> Reply {
        let redirect_uri = match &self.cfg.provider.redirect_url {
            Some(u) => u.to_string(),
            None => format!("{}://{}/oauth2/callback", req.scheme, req.host),
        };
        let state = random_token();
        let nonce = Secret::new(random_token());
        // RFC 7636 4.1: 43 characters of base64url, the minimum length.
        let verifier = self.cfg.provider.pkce.then(|| Secret::new(random_token()));
        let auth = AuthFlow {
            state: &state,
            nonce: nonce.expose(),
            pkce_verifier: verifier.as_ref().map(|v| v.expose().as_str()),
            prompt,
        };
        // Right after start-up the IdP may be a moment from discovered.
        self.provider.discovered().await;
        let url = match self.provider.authorization_url(&redirect_uri, &auth) {
            Ok(u) => u,
            Err(_) => return pages::idp_not_ready(),
        };
        let (target, stored) = self.place_target(target).await;
        let flow = Flow {
            state,
            nonce,
            verifier,
            target,
            stored,
            redirect_uri,
            expires_at: unix_now() + FLOW_TTL.as_secs(),
            started_us: crate::clock::unix_now_micros(),
            spent: false,
        };
        let name = flow_cookie_name(&self.cfg.cookie.name, &flow.state);
        let jar = CookieJar::from_headers(req.headers);
        let mut reply = pages::redirect(url.as_str(), Outcome::Unauthenticated);
        let cookies = self
            .evict_flows(&jar, req.host)
            .into_iter()
            .chain(self.flow_cookie(&name, &flow, req.host))
            .collect();
        append_cookies(&mut reply, cookies);
        reply
    }

    /// `/oauth2/start?rd=URL` (and `prompt=login`, the only `prompt` a
    /// link may ask for: the 403 page's "sign in with another account").
    pub(crate) async fn start(&self, req: &RequestView<'_>) -> Reply {
        let rd = query_param(req, "rd");
        let prompt = query_param(req, "prompt").filter(|p| p == "login");
        let target = self.target(req, rd.as_deref());
        self.begin_login(req, target, prompt.map(|_| "login")).await
    }

    /// The 403 for a signed-in `identity` that `authorization` refuses: its
    /// email and a "sign in with another account" link back to this
    /// request's target. Used by `decide` and `/oauth2/auth`.
    pub(crate) fn forbidden(&self, req: &RequestView<'_>, identity: &Identity) -> Reply {
        let target = self.target(req, None);
        forbidden_page(identity, &target)
    }

    /// Where a callback whose flow this browser no longer holds starts
    /// over to, if it does: an evicted flow's target; for a signed-in
    /// browser, a completed flow's target or `/`.
    async fn restart_target(&self, state: &str, jar: &CookieJar<'_>) -> Option<String> {
        let (codec, redis) = (&self.codec, self.store.redis());
        let p = &self.pending;
        if let Some(t) = p.ended_target(Ended::Evicted, state, codec, redis).await {
            return Some(t);
        }
        if !matches!(self.store.load(jar).await, Ok(Some(_))) {
            return None;
        }
        let completed = p.ended_target(Ended::Completed, state, codec, redis).await;
        Some(completed.unwrap_or_else(|| "/".to_owned()))
    }

    pub(crate) async fn callback(&self, req: &RequestView<'_>) -> Reply {
        let state = query_param(req, "state").unwrap_or_default();
        let jar = CookieJar::from_headers(req.headers);
        // Only a state we could have issued names a cookie: anything else
        // would let the query write into a `Set-Cookie` name.
        let flow_cookie = is_state(&state).then(|| flow_cookie_name(&self.cfg.cookie.name, &state));
        let clear_flow = || {
            flow_cookie.as_deref().and_then(|n| {
                HeaderValue::from_str(&clear_cookie(n, &self.flow_attrs(req.host))).ok()
            })
        };
        let fail = |mut reply: Reply| {
            append_cookies(&mut reply, clear_flow().into_iter().collect());
            reply
        };
        if let Some(err) = query_param(req, "error") {
            let msg = format!("The identity provider refused the sign-in ({err}).");
            return fail(pages::login_failed(StatusCode::FORBIDDEN, &msg));
        }
        let (Some(name), Some(code)) = (flow_cookie.as_deref(), query_param(req, "code")) else {
            return fail(pages::bad_request(
                "The sign-in callback lacks its code or state.",
            ));
        };
        let now = unix_now();
        let flow = jar
            .get(name)
            .and_then(|raw| self.open_flow(name, raw))
            .filter(|f| crate::oidc::constant_time_eq(&f.state, &state))
            .filter(|f| f.expires_at > now);
        let flow = match flow {
            // The browser that was refused reloads the callback: start over.
            Some(f) if f.spent => {
                let target = self.flow_target(&f).await;
                return self.restart_login(req, target).await;
            }
            Some(f) => f,
            // No live flow for this state in this browser. One evicted by a
            // newer flow in this browser, or a reload of a finished sign-in
            // by a signed-in browser (or a flow that expired): a fresh
            // login, never a session from this code. A signed-out browser
            // replaying a completed callback gets the error page.
            None => match self.restart_target(&state, &jar).await {
                Some(target) => return self.restart_login(req, target).await,
                None => {
                    return fail(pages::login_failed(
                        StatusCode::FORBIDDEN,
                        "This sign-in could not be matched to one started in this browser, or it expired. Start again.",
                    ))
                }
            },
        };
        if !self.consume_state(&flow.state) {
            return fail(pages::login_failed(
                StatusCode::FORBIDDEN,
                "This sign-in was already completed. Start again.",
            ));
        }
        let login = match self
            .provider
            .redeem(
                &code,
                &flow.redirect_uri,
                flow.verifier.as_ref().map(|v| v.expose().as_str()),
                flow.nonce.expose(),
            )
            .await
        {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in callback failed");
                let reply = match e {
                    OidcError::Unreachable(_) | OidcError::Invalid(_) => pages::idp_unavailable(),
                    OidcError::NotReady => pages::idp_not_ready(),
                    OidcError::InvalidGrant | OidcError::Rejected(_) => pages::login_failed(
                        StatusCode::BAD_REQUEST,
                        "The identity provider did not accept the sign-in code (expired or already used). Start again.",
                    ),
                    OidcError::Token(_) | OidcError::Config(_) => pages::login_failed(
                        StatusCode::FORBIDDEN,
                        "The identity provider's answer could not be verified, or the account's email address is not verified.",
                    ),
                };
                return fail(reply);
            }
        };
        // The decision log names who signed in (or was refused), never a token.
        crate::access_log::note_user(&login.identity.user);
        let target = self.flow_target(&flow).await;
        let target =
            redirect::validate(&target, req.host, &self.cfg.redirect.allowed_domains).into_owned();
        if !rules::authorized(&login.identity, &self.cfg.authorization) {
            // No session; the flow cookie stays as a spent marker so that a
            // reload of this URL starts a fresh login instead of an error.
            let mut reply = forbidden_page(&login.identity, &target);
            let spent = Flow {
                spent: true,
                ..flow
            };
            append_cookies(
                &mut reply,
                self.flow_cookie(name, &spent, req.host)
                    .into_iter()
                    .collect(),
            );
            return reply;
        }
        let now = unix_now();
        let session = Session {
            identity: std::sync::Arc::new(login.identity),
            sub: login.sub,
            sid: login.sid,
            id_token: login.id_token,
            access_token: login.access_token,
            refresh_token: login.refresh_token,
            refreshed_at: now,
            expires_at: now + self.cfg.cookie.expire.as_secs(),
            claims: self.session_claims(login.claims),
        };
        let cookies = match self.store.save(&session, None, req.host, &jar).await {
            Ok(c) => c,
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "could not store new session");
                return fail(pages::store_unavailable());
            }
        };
        self.metrics.session(SessionEvent::Created);
        if let Some(key) = &flow.stored {
            self.pending.remove(key, self.store.redis()).await;
        }
        self.pending
            .remember(Ended::Completed, &flow.state, &target, None);
        let mut reply = pages::redirect(&target, Outcome::Unauthenticated);
        append_cookies(
            &mut reply,
            clear_flow().into_iter().chain(cookies).collect(),
        );
        reply
    }
}

/// [`pages::forbidden`] for `identity`, the way back to `target`.
impl Gate {
    /// 403 from a policy: [`Gate::forbidden`]'s page, naming the policy.
    pub(crate) fn forbidden_by_policy(
        &self,
        req: &RequestView<'_>,
        identity: &Identity,
        policy: &str,
    ) -> Reply {
        let target = self.target(req, None);
        let who = if identity.email.is_empty() {
            &identity.user
        } else {
            &identity.email
        };
        pages::forbidden_by_policy(who, policy, &another_account_url(&target))
    }
}

fn forbidden_page(identity: &Identity, target: &str) -> Reply {
    let who = if identity.email.is_empty() {
        &identity.user
    } else {
        &identity.email
    };
    pages::forbidden(who, &another_account_url(target))
}

impl Gate {
    /// A fresh login to `target` from a spent callback; the old flow's
    /// cookie goes with the stale ones [`Gate::evict_flows`] clears.
    async fn restart_login(&self, req: &RequestView<'_>, target: String) -> Reply {
        let target =
            redirect::validate(&target, req.host, &self.cfg.redirect.allowed_domains).into_owned();
        self.begin_login(req, target, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Decision, Listener};
    use crate::testkit;

    /// The `Set-Cookie` `name=value` pairs of a login redirect for `uri`.
    async fn flow_pairs(kit: &testkit::Kit, uri: &str, cookie: &str) -> Vec<String> {
        let mut h = http::HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("text/html"));
        if !cookie.is_empty() {
            h.insert("cookie", HeaderValue::from_str(cookie).unwrap());
        }
        let req = testkit::admitted(Listener::Proxy, uri, &h);
        let Decision::Reply(r) = kit.gate.decide(&req.view()).await else {
            panic!("no login redirect for {uri}");
        };
        assert_eq!(r.status, StatusCode::FOUND);
        r.headers
            .iter()
            .filter(|(n, _)| n == http::header::SET_COOKIE)
            .map(|(_, v)| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn one_flow_cookie_stays_small_for_any_target_length() {
        let kit = testkit::kit("").await;
        let mut worst = 0;
        for len in [
            0,
            100,
            INLINE_TARGET_MAX - 30,
            INLINE_TARGET_MAX,
            300,
            2_800,
            8_192,
            40_000,
        ] {
            let uri = format!("/a?v={}", "x".repeat(len));
            for pair in flow_pairs(&kit, &uri, "").await {
                worst = worst.max(pair.len());
            }
        }
        assert!(worst < 1_000, "a flow cookie of {worst} bytes");
        // The most a browser can hold at once stays under 4,000 bytes.
        assert!((worst + 2) * MAX_PENDING_FLOWS < 4_000);
    }

    #[tokio::test]
    async fn starting_one_more_flow_than_allowed_clears_the_oldest() {
        let kit = testkit::kit("").await;
        let mut jar: Vec<String> = Vec::new();
        for i in 0..MAX_PENDING_FLOWS + 3 {
            let pairs = flow_pairs(&kit, &format!("/t{i}"), &jar.join("; ")).await;
            for p in pairs {
                let (name, value) = p.split_once('=').unwrap();
                jar.retain(|c| !c.starts_with(&format!("{name}=")));
                if !value.is_empty() {
                    jar.push(p.clone());
                }
            }
            assert!(jar.len() <= MAX_PENDING_FLOWS, "{} flows held", jar.len());
        }
        assert_eq!(jar.len(), MAX_PENDING_FLOWS);
    }

    #[test]
    fn cutting_a_target_keeps_scheme_host_and_path() {
        assert_eq!(cut_to_path("http://h/a/b?x=1#f", 100), "http://h/a/b");
        assert_eq!(cut_to_path("/a%2Fb?x", 100), "/a%2Fb");
        assert_eq!(cut_to_path("?x", 100), "/");
        assert_eq!(cut_to_path(&format!("/{}", "p".repeat(50)), 10), "/");
    }

    #[test]
    fn the_forbidden_page_escapes_who_and_where() {
        let who = Identity {
            user: "u".into(),
            email: "<script>x</script>@example.com".into(),
            preferred_username: String::new(),
            groups: vec![],
        };
        let r = forbidden_page(&who, "/a?\"><img src=x>&b=1");
        let body = std::str::from_utf8(&r.body).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(!body.contains("<img"), "{body}");
        assert!(
            body.contains("&lt;script&gt;x&lt;/script&gt;@example.com"),
            "{body}"
        );
        assert!(body.contains("prompt=login"), "{body}");
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
}
