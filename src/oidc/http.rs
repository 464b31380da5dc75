//! The HTTP client to the IdP: timeouts, no redirects, the extra CA bundle,
//! and a metric per call. Every IdP request goes through here.

use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use super::OidcError;
use crate::metrics::{IdpEndpoint, Metrics};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// An IdP document larger than this is not a discovery document or a JWKS.
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
    metrics: Metrics,
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

impl IdpHttp {
    pub fn new(ca_file: Option<&std::path::Path>, metrics: Metrics) -> Result<Self, OidcError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // A redirect from the IdP is never part of these protocols and
            // following one could leak the client secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authgate/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| OidcError::Config(format!("provider.ca_file: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| OidcError::Config(format!("provider.ca_file: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| OidcError::Config(format!("HTTP client: {e}")))?;
        Ok(IdpHttp { client, metrics })
    }

    pub async fn get_json(
        &self,
        url: &Url,
        endpoint: IdpEndpoint,
    ) -> Result<serde_json::Value, OidcError> {
        let res = self
            .client
            .get(url.clone())
            .header("accept", "application/json")
            .send()
            .await;
        self.finish(res, endpoint).await
    }

    /// GET with a bearer token (userinfo).
    pub async fn get_json_bearer(
        &self,
        url: &Url,
        token: &str,
        endpoint: IdpEndpoint,
    ) -> Result<serde_json::Value, OidcError> {
        let res = self
            .client
            .get(url.clone())
            .bearer_auth(token)
            .header("accept", "application/json")
            .send()
            .await;
        self.finish(res, endpoint).await
    }

    /// A token-endpoint request (code redemption or refresh).
    pub async fn token<T: DeserializeOwned>(
        &self,
        url: &Url,
        auth: ClientAuth,
        client_id: &str,
        client_secret: &str,
        form: &[(&str, &str)],
        endpoint: IdpEndpoint,
    ) -> Result<T, OidcError> {
        let mut req = self
            .client
            .post(url.clone())
            .header("accept", "application/json");
        let body = {
            let mut body = form_urlencoded::Serializer::new(String::new());
            body.extend_pairs(form.iter().copied());
            match auth {
                ClientAuth::Basic => {
                    // RFC 6749 2.3.1: form-encode before Basic.
                    let id: String =
                        form_urlencoded::byte_serialize(client_id.as_bytes()).collect();
                    let secret: String =
                        form_urlencoded::byte_serialize(client_secret.as_bytes()).collect();
                    req = req.basic_auth(id, Some(secret));
                    body.finish()
                }
                ClientAuth::Post => {
                    body.append_pair("client_id", client_id);
                    body.append_pair("client_secret", client_secret);
                    body.finish()
                }
            }
        };
        let res = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        let value = self.finish(res, endpoint).await?;
        serde_json::from_value(value)
            .map_err(|e| OidcError::Invalid(format!("token response: {e}")))
    }

    async fn finish(
        &self,
        res: reqwest::Result<reqwest::Response>,
        endpoint: IdpEndpoint,
    ) -> Result<serde_json::Value, OidcError> {
        let outcome = async {
            let res = res.map_err(|e| OidcError::Unreachable(without_url(&e)))?;
            let status = res.status();
            if res.content_length().is_some_and(|n| n as usize > MAX_BODY) {
                return Err(OidcError::Invalid("response too large".into()));
            }
            let bytes = res
                .bytes()
                .await
                .map_err(|e| OidcError::Unreachable(without_url(&e)))?;
            if bytes.len() > MAX_BODY {
                return Err(OidcError::Invalid("response too large".into()));
            }
            if status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| OidcError::Invalid(format!("not JSON: {e}")));
            }
            // RFC 6749 5.2 error codes matter to the caller (invalid_grant).
            let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned));
            match (status.as_u16(), code.as_deref()) {
                (400 | 401, Some("invalid_grant")) => Err(OidcError::InvalidGrant),
                (s, code) if s >= 500 => Err(OidcError::Unreachable(format!(
                    "status {s}{}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ))),
                (s, code) => Err(OidcError::Rejected(format!(
                    "status {s}{}",
                    code.map(|c| format!(" ({c})")).unwrap_or_default()
                ))),
            }
        }
        .await;
        self.metrics.idp(endpoint, outcome.is_ok());
        outcome
    }
}

/// reqwest errors print the URL, which for some IdPs carries a token.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    kind.to_string()
}
