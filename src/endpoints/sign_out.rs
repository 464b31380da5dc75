//! `/oauth2/sign_out`: ends the session here and, when the IdP publishes an
//! `end_session_endpoint`, there too (RP-initiated logout with `id_token_hint`).

use super::{absolute, pages, query_param};
use crate::authz::decide::append_cookies;
use crate::authz::{redirect, Outcome, Reply, RequestView};
use crate::gate::Gate;
use crate::session::cookies::CookieJar;

impl Gate {
    pub(crate) async fn sign_out(&self, req: &RequestView<'_>) -> Reply {
        let jar = CookieJar::from_headers(req.headers);
        let rd = query_param(req, "rd");
        let wanted = rd
            .as_deref()
            .filter(|r| !r.is_empty())
            .or_else(|| {
                req.headers
                    .get("x-auth-request-redirect")
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or("/");
        let target = redirect::validate(wanted, req.host, &self.cfg.redirect.allowed_domains);
        let (id_token, ticket) = match self.store.load(&jar).await {
            Ok(Some((s, t))) => (s.id_token, t),
            Ok(None) => (None, None),
            Err(e) => {
                // The browser's cookie still goes; the Redis entry expires on its own.
                tracing::warn!(error = %e, "sign-out could not read the session store");
                (None, None)
            }
        };
        let cookies = match self.store.clear(ticket.as_ref(), req.host, &jar).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "sign-out could not delete the stored session");
                return pages::store_unavailable();
            }
        };
        // Before discovery the IdP's end-session endpoint is not known yet:
        // skipping it would leave the IdP session signed in.
        self.provider.discovered().await;
        let location = match self.provider.end_session_url(
            id_token.as_ref().map(|t| t.expose().as_str()),
            &absolute(req, &target),
        ) {
            Some(url) => url.to_string(),
            None => target.into_owned(),
        };
        let mut reply = pages::redirect(&location, Outcome::Unauthenticated);
        append_cookies(&mut reply, cookies);
        reply
    }
}
