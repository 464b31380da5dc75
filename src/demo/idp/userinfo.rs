//! The userinfo endpoint (OIDC Core 5.3): the profile claims for a bearer
//! access token of this provider.

use http::header::{HeaderMap, AUTHORIZATION};
use http::{Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Value};

use super::pages::{json_response, Challenge};
use super::token::ACCESS_TOKEN_TYP;
use super::users::{find_user_by_sub, User};
use super::DemoIdp;

impl DemoIdp {
    /// `GET` or `POST /userinfo` with `Authorization: Bearer <access token>`;
    /// anything else is 401 with a `Bearer` challenge (RFC 6750 §3): plain
    /// when no bearer token came, `error="invalid_token"` for a refused one.
    pub(super) fn userinfo(&self, headers: &HeaderMap) -> Response<Vec<u8>> {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                (v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")).then(|| v[7..].trim())
            });
        let user = token.and_then(|t| self.verify_access_token(t));
        let Some(user) = user else {
            let challenge = if token.is_some() {
                Challenge::BearerInvalidToken
            } else {
                Challenge::Bearer
            };
            let resp = json_response(StatusCode::UNAUTHORIZED, &json!({"error": "invalid_token"}));
            return challenge.apply(resp);
        };
        let mut claims = serde_json::Map::new();
        user.profile_claims(&mut claims);
        json_response(StatusCode::OK, &Value::Object(claims))
    }

    /// Accepts only this provider's unexpired access tokens (typ at+jwt), so an
    /// ID token cannot be replayed as a bearer credential here.
    fn verify_access_token(&self, token: &str) -> Option<&'static User> {
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[self.inner.issuer.as_str()]);
        v.validate_aud = false;
        v.leeway = 0;
        v.set_required_spec_claims(&["exp", "iss", "sub"]);
        let data = self.inner.signer.decode(token, &v).ok()?;
        if data.header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return None;
        }
        find_user_by_sub(data.claims.get("sub")?.as_str()?)
    }
}
