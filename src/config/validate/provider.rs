//! `provider`: issuer, client registration, scopes, endpoints (discovered or
//! by hand), audiences, claim paths and the CA bundle.

use super::Validator;
use crate::config::file::ProviderFile;
use crate::config::model::{ClaimPath, Claims, Endpoints, Provider};
use crate::domain::Secret;

impl Validator {
    pub(super) fn provider(&mut self, p: ProviderFile) -> Option<Provider> {
        let issuer_url = self.required_url("provider.issuer_url", &p.issuer_url);
        if let Some(url) = &issuer_url {
            if url.query().is_some() || url.fragment().is_some() {
                self.problem("provider.issuer_url", "must not have a query or fragment");
            }
        }
        let client_id = self.required_text("provider.client_id", &p.client_id);
        let client_secret = self.secret_twin(
            "provider.client_secret",
            &p.client_secret,
            "provider.client_secret_file",
            &p.client_secret_file,
        );

        let scopes = self.text_list("provider.scopes", &p.scopes, false);
        if let Some(scopes) = &scopes {
            if !scopes.iter().any(|s| s == "openid") {
                self.problem("provider.scopes", "must include openid");
            }
        }
        let redirect_url = self.optional_url("provider.redirect_url", &p.redirect_url);

        let endpoint_keys = [
            ("provider.authorization_endpoint", &p.authorization_endpoint),
            ("provider.token_endpoint", &p.token_endpoint),
            ("provider.userinfo_endpoint", &p.userinfo_endpoint),
            ("provider.jwks_uri", &p.jwks_uri),
        ];
        let end_session =
            self.optional_url("provider.end_session_endpoint", &p.end_session_endpoint);
        let endpoints = if p.discovery {
            // Given by hand but unused: still worth a syntax check.
            for (key, text) in endpoint_keys {
                self.optional_url(key, text);
            }
            Some(None)
        } else {
            let [auth, token, userinfo, jwks] = endpoint_keys.map(|(key, text)| {
                if text.trim().is_empty() {
                    self.problem(key, "is required when provider.discovery is false");
                    None
                } else {
                    self.required_url(key, text)
                }
            });
            match (auth, token, userinfo, jwks, end_session.clone()) {
                (
                    Some(authorization_endpoint),
                    Some(token_endpoint),
                    Some(userinfo_endpoint),
                    Some(jwks_uri),
                    Some(end_session_endpoint),
                ) => Some(Some(Endpoints {
                    authorization_endpoint,
                    token_endpoint,
                    userinfo_endpoint,
                    jwks_uri,
                    end_session_endpoint,
                })),
                _ => None,
            }
        };

        let audiences = self.text_list("provider.audiences", &p.audiences, false);
        let extra_auth_params = self.extra_auth_params(&p.extra_auth_params);
        let claims = Claims {
            user: self.claim_path("provider.claims.user", &p.claims.user),
            email: self.claim_path("provider.claims.email", &p.claims.email),
            groups: self.claim_path("provider.claims.groups", &p.claims.groups),
            preferred_username: self.claim_path(
                "provider.claims.preferred_username",
                &p.claims.preferred_username,
            ),
        };
        let ca_file = self.optional_file("provider.ca_file", &p.ca_file);

        Some(Provider {
            issuer_url: issuer_url?,
            client_id: client_id?,
            client_secret: Secret::new(client_secret?),
            scopes: scopes?,
            redirect_url: redirect_url?,
            endpoints: endpoints?,
            end_session_endpoint: end_session?,
            pkce: p.pkce,
            audiences: audiences?,
            extra_auth_params,
            claims,
            allow_unverified_email: p.allow_unverified_email,
            ca_file: ca_file?,
        })
    }

    /// `provider.extra_auth_params`: names are RFC 6749 parameter names
    /// other than those authgate sets for the flow itself (state, nonce,
    /// PKCE, redirect_uri, ...); values are free text without control
    /// characters. Problems are reported per name.
    fn extra_auth_params(
        &mut self,
        params: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(String, String)> {
        const OWN: [&str; 8] = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "code_challenge_method",
        ];
        let mut out = Vec::with_capacity(params.len());
        for (name, value) in params {
            let key = format!("provider.extra_auth_params.{name}");
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !name_ok {
                self.problem(
                    key,
                    "must be a parameter name of letters, digits, -, ., _ or ~",
                );
            } else if OWN.contains(&name.as_str()) {
                self.problem(key, "is set by authgate itself for every login flow");
            } else if value.chars().any(char::is_control) {
                self.problem(key, "must not contain control characters");
            } else {
                out.push((name.clone(), value.clone()));
            }
        }
        out
    }

    fn claim_path(&mut self, key: &str, text: &str) -> ClaimPath {
        let parts: Vec<String> = text.trim().split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            self.problem(
                key,
                "must be a claim name or dotted path such as realm_access.roles",
            );
        }
        ClaimPath(parts)
    }
}
