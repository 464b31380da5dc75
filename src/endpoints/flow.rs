//! The login flow: `/oauth2/start` (and every login redirect) and
//! `/oauth2/callback`. Each flow has its own state, nonce, PKCE verifier and
//! CSRF cookie (`NAME_csrf_<state prefix>`), so parallel logins in one
//! browser do not overwrite each other.

use http::{header, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::{pages, query_param};
use crate::authz::decide::append_cookies;
use crate::authz::{redirect, rules, Outcome, Reply, RequestView};
use crate::clock::unix_now;
use crate::domain::Secret;
use crate::gate::{Gate, FLOW_TTL};
use crate::metrics::SessionEvent;
use crate::oidc::OidcError;
use crate::session::cookies::{clear_cookie, set_cookie, CookieAttrs, CookieJar};
use crate::session::store::StoreError;
use crate::session::Session;

/// How much of the state names the flow's cookie: enough to tell flows apart.
const FLOW_ID_LEN: usize = 16;

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
    /// The validated post-login target.
    #[serde(rename = "r")]
    target: String,
    #[serde(rename = "u")]
    redirect_uri: String,
    #[serde(rename = "e")]
    expires_at: u64,
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

    /// 302 to the IdP with a fresh flow and its CSRF cookie.
    pub(crate) fn login_redirect(&self, req: &RequestView<'_>, rd: Option<&str>) -> Reply {
        let target = self.target(req, rd);
        let redirect_uri = match &self.cfg.provider.redirect_url {
            Some(u) => u.to_string(),
            None => format!("{}://{}/oauth2/callback", req.scheme, req.host),
        };
        let state = random_token();
        let nonce = Secret::new(random_token());
        // RFC 7636 4.1: 43 characters of base64url, the minimum length.
        let verifier = self.cfg.provider.pkce.then(|| Secret::new(random_token()));
        let url = match self.provider.authorization_url(
            &redirect_uri,
            &state,
            nonce.expose(),
            verifier.as_ref().map(|v| v.expose().as_str()),
        ) {
            Ok(u) => u,
            Err(_) => return pages::idp_not_ready(),
        };
        let flow = Flow {
            state,
            nonce,
            verifier,
            target,
            redirect_uri,
            expires_at: unix_now() + FLOW_TTL.as_secs(),
        };
        let name = flow_cookie_name(&self.cfg.cookie.name, &flow.state);
        let json = serde_json::to_vec(&flow).unwrap_or_default();
        let sealed = self.codec.seal(name.as_bytes(), &json);
        let mut reply = pages::redirect(url.as_str(), Outcome::Unauthenticated);
        if let Ok(v) =
            HeaderValue::from_str(&set_cookie(&name, &sealed, &self.flow_attrs(req.host)))
        {
            reply.headers.push((header::SET_COOKIE, v));
        }
        reply
    }

    pub(crate) async fn start(&self, req: &RequestView<'_>) -> Reply {
        let rd = query_param(req, "rd");
        self.login_redirect(req, rd.as_deref())
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
        let flow = jar
            .get(name)
            .and_then(|raw| self.codec.open(name.as_bytes(), raw).ok())
            .and_then(|plain| serde_json::from_slice::<Flow>(&plain).ok())
            .filter(|f| crate::oidc::constant_time_eq(&f.state, &state))
            .filter(|f| f.expires_at > unix_now());
        let Some(flow) = flow else {
            return fail(pages::login_failed(
                StatusCode::FORBIDDEN,
                "This sign-in could not be matched to one started in this browser, or it expired. Start again.",
            ));
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
        if !rules::authorized(&login.identity, &self.cfg.authorization) {
            return fail(pages::forbidden());
        }
        let now = unix_now();
        let session = Session {
            identity: login.identity,
            sub: login.sub,
            sid: login.sid,
            id_token: login.id_token,
            access_token: login.access_token,
            refresh_token: login.refresh_token,
            refreshed_at: now,
            expires_at: now + self.cfg.cookie.expire.as_secs(),
        };
        let cookies = match self.store.save(&session, None, req.host, &jar).await {
            Ok(c) => c,
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "could not store new session");
                return fail(pages::store_unavailable());
            }
        };
        self.metrics.session(SessionEvent::Created);
        let target = redirect::validate(&flow.target, req.host, &self.cfg.redirect.allowed_domains);
        let mut reply = pages::redirect(&target, Outcome::Unauthenticated);
        append_cookies(
            &mut reply,
            clear_flow().into_iter().chain(cookies).collect(),
        );
        reply
    }
}
