//! OpenID Provider metadata (`/.well-known/openid-configuration`).

use serde::Deserialize;
use url::Url;

use super::http::IdpHttp;
use super::OidcError;
use crate::metrics::IdpEndpoint;

/// The endpoints authgate uses, discovered or configured.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// The exact `iss` tokens carry.
    pub issuer: String,
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Option<Url>,
    pub jwks_uri: Url,
    pub end_session_endpoint: Option<Url>,
    /// `token_endpoint_auth_methods_supported`; empty = not published.
    pub token_auth: Vec<String>,
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    end_session_endpoint: Option<Url>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

pub fn well_known(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.set_query(None);
    url
}

pub async fn discover(issuer: &Url, http: &IdpHttp) -> Result<Metadata, OidcError> {
    let body = http
        .get_json(&well_known(issuer), IdpEndpoint::Discovery)
        .await?;
    let doc: Document = serde_json::from_value(body)
        .map_err(|e| OidcError::Invalid(format!("discovery document: {e}")))?;
    // OIDC Discovery 4.3: the document must name the issuer we asked about,
    // or tokens from some other issuer could be accepted as ours.
    if doc.issuer.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
        return Err(OidcError::Invalid(format!(
            "discovery issuer {:?} does not match provider.issuer_url",
            doc.issuer
        )));
    }
    Ok(Metadata {
        issuer: doc.issuer,
        authorization_endpoint: doc.authorization_endpoint,
        token_endpoint: doc.token_endpoint,
        userinfo_endpoint: doc.userinfo_endpoint,
        jwks_uri: doc.jwks_uri,
        end_session_endpoint: doc.end_session_endpoint,
        token_auth: doc.token_endpoint_auth_methods_supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_keeps_the_realm_path() {
        let u = Url::parse("https://kc.example.com/realms/demo/").unwrap();
        assert_eq!(
            well_known(&u).as_str(),
            "https://kc.example.com/realms/demo/.well-known/openid-configuration"
        );
        let u = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(
            well_known(&u).as_str(),
            "http://127.0.0.1:9000/.well-known/openid-configuration"
        );
    }
}
