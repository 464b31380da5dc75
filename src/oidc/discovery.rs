//! OpenID Provider metadata (`/.well-known/openid-configuration`), fetched
//! and parsed by `openidconnect`, reduced to the endpoints authgate uses.

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, DiscoveryError, IssuerUrl};
use serde::{Deserialize, Serialize};
use url::Url;

use super::http::{IdpHttp, TransportError};
use super::OidcError;
use crate::metrics::IdpEndpoint;

/// The endpoints authgate uses, discovered or configured.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The exact `iss` tokens carry.
    pub issuer: String,
    /// Where browsers are sent to sign in (OIDC Core 3.1.2).
    pub authorization_endpoint: Url,
    /// Where codes and refresh tokens are redeemed (OIDC Core 3.1.3).
    pub token_endpoint: Url,
    /// Where missing claims are fetched (OIDC Core 5.3), if published.
    pub userinfo_endpoint: Option<Url>,
    /// The signing keys (RFC 7517).
    pub jwks_uri: Url,
    /// RP-initiated logout (OIDC RP-Initiated Logout 1.0), if published.
    pub end_session_endpoint: Option<Url>,
    /// `token_endpoint_auth_methods_supported`; empty = not published.
    pub token_auth: Vec<String>,
}

/// The one metadata member beyond OIDC Discovery 1.0 that authgate reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutMetadata {
    /// OIDC RP-Initiated Logout 1.0 section 2.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<Url>,
}

impl AdditionalProviderMetadata for LogoutMetadata {}

/// The provider metadata as `openidconnect` parses it.
pub type ProviderMetadata = openidconnect::ProviderMetadata<
    LogoutMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery yields: the metadata, and the JWKS the crate fetched with
/// it (as JSON, to seed authgate's key cache without a second fetch).
pub struct Discovered {
    /// The endpoints.
    pub metadata: Metadata,
    /// The key set, re-serialised by `openidconnect` (unusable keys dropped).
    pub jwks: serde_json::Value,
}

/// The discovery URL `openidconnect` derives from an issuer (OIDC Discovery
/// 1.0 section 4: the issuer's path, then `/.well-known/openid-configuration`).
pub fn well_known(issuer: &str) -> Result<Url, OidcError> {
    IssuerUrl::new(issuer.to_owned())
        .and_then(|i| i.join(".well-known/openid-configuration"))
        .map_err(|e| OidcError::Config(format!("provider.issuer_url: {e}")))
}

/// Discovers the provider and fetches its keys. The document's `issuer` must
/// be `issuer_url`, with or without a trailing `/` (OIDC Discovery 4.3: else
/// tokens of another issuer could pass as ours). Errors: IdP down is
/// [`OidcError::Unreachable`]; anything wrong with its answer is
/// [`OidcError::Invalid`] or [`OidcError::Rejected`].
pub async fn discover(issuer_url: &Url, http: &IdpHttp) -> Result<Discovered, OidcError> {
    let trimmed = issuer_url.as_str().trim_end_matches('/');
    // `openidconnect` compares issuers byte for byte; `url` adds a `/` to a
    // bare host. Try the spelling without, then with, a trailing slash.
    let first = discover_exact(trimmed.to_owned(), http).await;
    let md = match first {
        Err(DiscoveryError::Validation(_)) => discover_exact(format!("{trimmed}/"), http).await,
        r => r,
    }
    .map_err(|e| match e {
        DiscoveryError::Request(t) => OidcError::from(t),
        DiscoveryError::Response(status, _, msg) if status.is_success() => {
            OidcError::Invalid(format!("discovery: {msg}"))
        }
        DiscoveryError::Response(status, _, _) => {
            OidcError::Rejected(format!("status {}", status.as_u16()))
        }
        DiscoveryError::Parse(e) => OidcError::Invalid(format!("discovery document: {e}")),
        DiscoveryError::Validation(_) => {
            OidcError::Invalid("discovery issuer does not match provider.issuer_url".to_owned())
        }
        e => OidcError::Invalid(format!("discovery: {e}")),
    })?;
    let token_endpoint = md
        .token_endpoint()
        .ok_or_else(|| OidcError::Invalid("discovery document without token_endpoint".into()))?;
    let token_auth = md
        .token_endpoint_auth_methods_supported()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| serde_json::to_value(m).ok())
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let jwks =
        serde_json::to_value(md.jwks()).map_err(|e| OidcError::Invalid(format!("JWKS: {e}")))?;
    Ok(Discovered {
        metadata: Metadata {
            issuer: md.issuer().as_str().to_owned(),
            authorization_endpoint: md.authorization_endpoint().url().clone(),
            token_endpoint: token_endpoint.url().clone(),
            userinfo_endpoint: md.userinfo_endpoint().map(|u| u.url().clone()),
            jwks_uri: md.jwks_uri().url().clone(),
            end_session_endpoint: md.additional_metadata().end_session_endpoint.clone(),
            token_auth,
        },
        jwks,
    })
}

async fn discover_exact(
    issuer: String,
    http: &IdpHttp,
) -> Result<ProviderMetadata, DiscoveryError<TransportError>> {
    let issuer = IssuerUrl::new(issuer).map_err(DiscoveryError::UrlParse)?;
    let call = http.call(IdpEndpoint::Discovery);
    ProviderMetadata::discover_async(issuer, &call).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_keeps_the_realm_path() {
        assert_eq!(
            well_known("https://kc.example.com/realms/demo/")
                .unwrap()
                .as_str(),
            "https://kc.example.com/realms/demo/.well-known/openid-configuration"
        );
        assert_eq!(
            well_known("http://127.0.0.1:9000").unwrap().as_str(),
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
    }

    #[test]
    fn end_session_endpoint_is_read_beside_the_standard_metadata() {
        let doc = serde_json::json!({
            "issuer": "https://idp.example.com",
            "authorization_endpoint": "https://idp.example.com/auth",
            "token_endpoint": "https://idp.example.com/token",
            "jwks_uri": "https://idp.example.com/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "end_session_endpoint": "https://idp.example.com/logout"
        });
        let md: ProviderMetadata = serde_json::from_value(doc).unwrap();
        assert_eq!(
            md.additional_metadata()
                .end_session_endpoint
                .as_ref()
                .unwrap()
                .as_str(),
            "https://idp.example.com/logout"
        );
    }
}
