//! `/oauth2/auth` (nginx `auth_request`, Traefik forwardAuth, Caddy
//! `forward_auth`), `/oauth2/userinfo` and `/oauth2/backchannel_logout`:
//! served on `listen` only.

use bytes::Bytes;
use http::StatusCode;

use super::pages;
use crate::authz::decide::{append_cookies, Authn, Before};
use crate::authz::{Outcome, Reply, RequestView};
use crate::gate::Gate;

impl Gate {
    /// 202 with the identity headers, 401 or 403: never a redirect.
    ///
    /// Asked by a trusted forward-auth caller, the rules apply to the
    /// original request it reports ([`RequestView::original`]): one that
    /// `skip_auth_routes`, `skip_preflight` or a `skip_auth` policy lets
    /// through answers 202
    /// without identity headers, decided by the one rule `Gate::decide`
    /// applies to the proxy's requests (`skips_authentication`); if the
    /// headers reporting it disagree, nothing is skipped.
    pub async fn auth_check(&self, req: &RequestView<'_>) -> Reply {
        let Before::Authenticate(selection) = self.before_authentication(req) else {
            return Reply::new(StatusCode::ACCEPTED, Outcome::Skipped);
        };
        match self.authenticate(req).await {
            Authn::Identified(mut grant) => {
                crate::access_log::note_user(&grant.identity.user);
                if let Err(mut r) = self.authorize(req, &selection, &grant) {
                    append_cookies(&mut r, grant.set_cookies);
                    return r;
                }
                grant.assertion = self.assertion_for(&grant, req.host);
                let mut r = Reply::new(StatusCode::ACCEPTED, Outcome::Allowed);
                r.headers.extend(self.headers.values(&grant).pairs());
                append_cookies(&mut r, grant.set_cookies);
                r
            }
            Authn::Anonymous {
                set_cookies,
                bearer_error,
            } => {
                let mut r = match bearer_error {
                    Some(e) => pages::bearer_unauthorized(e),
                    None => pages::unauthorized(),
                };
                append_cookies(&mut r, set_cookies);
                r
            }
            Authn::Unavailable(r) => r,
        }
    }

    /// `{"user","email","preferred_username","groups"}` or 401.
    pub async fn userinfo(&self, req: &RequestView<'_>) -> Reply {
        match self.authenticate(req).await {
            Authn::Identified(grant) => {
                crate::access_log::note_user(&grant.identity.user);
                let body = serde_json::to_vec(&*grant.identity).unwrap_or_default();
                let mut r = pages::json(StatusCode::OK, Outcome::Allowed, body);
                append_cookies(&mut r, grant.set_cookies);
                r
            }
            Authn::Anonymous {
                set_cookies,
                bearer_error,
            } => {
                let mut r = pages::json(
                    StatusCode::UNAUTHORIZED,
                    Outcome::Unauthenticated,
                    br#"{"error":"unauthorized"}"#.to_vec(),
                );
                // RFC 6750 §3: a refused JWT says so in the challenge.
                pages::set_challenge(&mut r, bearer_error);
                append_cookies(&mut r, set_cookies);
                r
            }
            Authn::Unavailable(r) => r,
        }
    }

    /// OIDC Back-Channel Logout 1.0: `POST` with `logout_token`. Only the
    /// Redis store can revoke; a cookie session lives in the browser alone.
    pub async fn backchannel_logout(&self, method: &str, body: &Bytes) -> Reply {
        let err = |status: StatusCode, code: &'static str| {
            let body = format!(r#"{{"error":"{code}"}}"#).into_bytes();
            pages::json(status, Outcome::Error, body)
        };
        if !method.eq_ignore_ascii_case("POST") {
            return err(StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
        }
        if self.store.redis().is_none() {
            return err(StatusCode::NOT_IMPLEMENTED, "session_store_cannot_revoke");
        }
        let token = form_urlencoded::parse(body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            return err(StatusCode::BAD_REQUEST, "invalid_request");
        };
        let target = match self.provider.verify_logout_token(&token).await {
            Ok(t) => t,
            Err(e) if e.is_unavailable() => {
                return err(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            Err(e) => {
                tracing::info!(error = %e, "back-channel logout token refused");
                return err(StatusCode::BAD_REQUEST, "invalid_request");
            }
        };
        match self.store.revoke(&target).await {
            Ok(n) => {
                tracing::info!(sessions = n, "back-channel logout");
                for _ in 0..n {
                    self.metrics.session(crate::metrics::SessionEvent::Cleared);
                }
                let mut r = Reply::new(StatusCode::OK, Outcome::Allowed);
                r.body = Bytes::new();
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout could not reach redis");
                err(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
        }
    }
}
