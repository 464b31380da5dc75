//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the
//! end_session endpoint and which post-logout targets it may redirect to.

use http::{Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;
use url::Url;

use super::pages::{bad_request_page, html_page, redirect_with};
use super::{is_loopback_http, DemoClient, DemoIdp, Params};

impl DemoIdp {
    /// `GET` or `POST /logout`: a signed-out page, or a redirect to a
    /// registered `post_logout_redirect_uri` carrying `state`.
    pub(super) fn logout(&self, p: &Params) -> Response<Vec<u8>> {
        let Some(target) = p.get("post_logout_redirect_uri") else {
            return html_page(
                StatusCode::OK,
                "Signed out - authgate demo IdP",
                "<h1>Signed out</h1>\n<p>You have been signed out of the development identity provider.</p>\n",
            );
        };
        // The client is named by client_id or by the ID token's audience; an
        // expired hint is fine (the session may be long gone), a forged one is not.
        let mut client_id = p.get("client_id").cloned();
        if let Some(hint) = p.get("id_token_hint") {
            let mut v = Validation::new(Algorithm::RS256);
            v.set_issuer(&[self.inner.issuer.as_str()]);
            v.validate_aud = false;
            v.validate_exp = false;
            v.set_required_spec_claims(&["iss", "aud"]);
            let Ok(data) = self.inner.signer.decode(hint, &v) else {
                return bad_request_page("The id_token_hint is not valid.");
            };
            let aud = data
                .claims
                .get("aud")
                .and_then(Value::as_str)
                .map(str::to_string);
            if client_id.is_some() && client_id != aud {
                return bad_request_page("client_id does not match the id_token_hint.");
            }
            client_id = aud;
        }
        let allowed = match client_id.as_deref() {
            Some(id) => self
                .client(id)
                .is_some_and(|c| logout_uri_allowed(c, target)),
            None => self
                .inner
                .clients
                .iter()
                .any(|c| logout_uri_allowed(c, target)),
        };
        if !allowed {
            return bad_request_page("The post_logout_redirect_uri is not registered.");
        }
        match p.get("state") {
            Some(s) => redirect_with(target, &[("state", s.as_str())]),
            None => redirect_with(target, &[]),
        }
    }
}

/// Post-logout targets must share an origin with a registered redirect URI.
fn logout_uri_allowed(client: &DemoClient, target: &str) -> bool {
    let Ok(parsed) = Url::parse(target) else {
        return false;
    };
    if parsed.fragment().is_some() || !parsed.username().is_empty() {
        return false;
    }
    if client.redirect_uris.is_empty() {
        return is_loopback_http(&parsed);
    }
    client
        .redirect_uris
        .iter()
        .any(|r| Url::parse(r).is_ok_and(|registered| registered.origin() == parsed.origin()))
}
