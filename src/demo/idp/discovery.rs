//! The discovery document (OpenID Connect Discovery 1.0,
//! `/.well-known/openid-configuration`).

use http::{Response, StatusCode};
use serde_json::json;

use super::pages::json_response;
use super::DemoIdp;

impl DemoIdp {
    /// `GET /.well-known/openid-configuration`: endpoints and capabilities.
    pub(super) fn discovery(&self) -> Response<Vec<u8>> {
        json_response(
            StatusCode::OK,
            &json!({
                "issuer": self.inner.issuer,
                "authorization_endpoint": self.endpoint("authorize"),
                "token_endpoint": self.endpoint("token"),
                "userinfo_endpoint": self.endpoint("userinfo"),
                "jwks_uri": self.endpoint("jwks"),
                "end_session_endpoint": self.endpoint("logout"),
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
                "claims_supported": [
                    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid",
                    "email", "email_verified", "preferred_username", "name", "groups"
                ],
            }),
        )
    }
}
