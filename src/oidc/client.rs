//! The `openidconnect` client of one login: the authorization URL (state,
//! nonce, PKCE S256), the token endpoint (code and refresh grants, with
//! client_secret_basic or _post) and userinfo, each mapped onto
//! [`OidcError`] so an unavailable IdP stays a 5xx and a refusal a 4xx.

use std::borrow::Cow;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreResponseType,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthType, AuthUrl, AuthenticationFlow, AuthorizationCode,
    ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKeySet, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse, TokenUrl,
    UserInfoError, UserInfoUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::discovery::Metadata;
use super::http::{IdpCall, IdpHttp};
use super::OidcError;
use crate::config;
use crate::metrics::IdpEndpoint;

/// Every claim `openidconnect` has no field for (`groups`, `realm_access`,
/// `sid`, `nbf`, …), kept as JSON so dotted `provider.claims` paths work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExtraClaims(pub Map<String, Value>);

impl AdditionalClaims for ExtraClaims {}

/// The ID token fields of a token response, with [`ExtraClaims`].
pub type IdTokenFields = openidconnect::IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// A token endpoint response (RFC 6749 5.1 plus OIDC Core 3.1.3.3).
pub type TokenResponse = StandardTokenResponse<IdTokenFields, CoreTokenType>;
/// An ID token as received (not yet verified).
pub type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// The claims of a verified ID token.
pub type IdTokenClaims = openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>;

type TokenError = StandardErrorResponse<CoreErrorResponseType>;

/// The client, by which endpoints are set (authorization, token, userinfo).
type ClientWith<HasAuth, HasToken, HasUserInfo> = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    TokenError,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    HasAuth,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    HasToken,
    HasUserInfo,
>;

/// The client with an authorization and a token endpoint.
pub type Client = ClientWith<EndpointSet, EndpointSet, EndpointNotSet>;

/// Builds the client for `md`. Client authentication follows the IdP's
/// `token_endpoint_auth_methods_supported`: client_secret_post only when it
/// lists _post and not _basic, else client_secret_basic (RFC 6749 2.3.1,
/// which `openidconnect` form-encodes before Basic as required).
pub fn build(cfg: &config::Provider, md: &Metadata) -> Result<Client, OidcError> {
    let issuer = IssuerUrl::new(md.issuer.clone())
        .map_err(|e| OidcError::Invalid(format!("issuer: {e}")))?;
    let supports = |m: &str| md.token_auth.iter().any(|a| a == m);
    let auth = if !md.token_auth.is_empty()
        && !supports("client_secret_basic")
        && supports("client_secret_post")
    {
        AuthType::RequestBody
    } else {
        AuthType::BasicAuth
    };
    Ok(
        ClientWith::<EndpointNotSet, EndpointNotSet, EndpointNotSet>::new(
            ClientId::new(cfg.client_id.clone()),
            issuer,
            JsonWebKeySet::default(),
        )
        // Even an empty secret: Basic `id:` is what public clients sent before.
        .set_client_secret(ClientSecret::new(cfg.client_secret.expose().clone()))
        .set_auth_type(auth)
        .set_auth_uri(AuthUrl::from_url(md.authorization_endpoint.clone()))
        .set_token_uri(TokenUrl::from_url(md.token_endpoint.clone())),
    )
}

/// The authorization request URL (OIDC Core 3.1.2.1) of one login flow:
/// `response_type=code`, the configured scopes (`openid` once), state, nonce,
/// with a verifier its S256 challenge (RFC 7636 4.2), then the fixed
/// `provider.extra_auth_params` (config validation keeps authgate's own
/// names out of them). `prompt` (OIDC Core 3.1.2.1, e.g. `login` for "sign
/// in with another account") replaces a configured `prompt`.
pub fn authorization_url(
    client: &Client,
    cfg: &config::Provider,
    redirect_uri: &str,
    flow: &AuthFlow<'_>,
) -> Result<Url, OidcError> {
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| OidcError::Config(format!("redirect URL: {e}")))?;
    let (state, nonce) = (flow.state.to_owned(), flow.nonce.to_owned());
    let mut req = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_redirect_uri(Cow::Owned(redirect))
        // The crate adds `openid` itself.
        .add_scopes(
            cfg.scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .map(|s| Scope::new(s.clone())),
        );
    if let Some(v) = flow.pkce_verifier {
        req = req.set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(
            &PkceCodeVerifier::new(v.to_owned()),
        ));
    }
    for (name, value) in &cfg.extra_auth_params {
        if flow.prompt.is_some() && name == "prompt" {
            continue;
        }
        req = req.add_extra_param(name.clone(), value.clone());
    }
    if let Some(p) = flow.prompt {
        req = req.add_extra_param("prompt", p.to_owned());
    }
    Ok(req.url().0)
}

/// The per-flow values of one authorization request.
#[derive(Clone, Copy)]
pub struct AuthFlow<'a> {
    /// The flow's `state` (CSRF, bound to the browser by its flow cookie).
    pub state: &'a str,
    /// The flow's `nonce` (bound into the ID token).
    pub nonce: &'a str,
    /// The PKCE verifier whose S256 challenge is sent, when PKCE is on.
    pub pkce_verifier: Option<&'a str>,
    /// An OIDC `prompt` value for this request only (`login`).
    pub prompt: Option<&'a str>,
}

impl std::fmt::Debug for AuthFlow<'_> {
    // The nonce and verifier are secrets of the flow.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthFlow")
            .field("prompt", &self.prompt)
            .finish_non_exhaustive()
    }
}

/// Redeems an authorization code (OIDC Core 3.1.3.1).
pub async fn exchange_code(
    client: &Client,
    http: &IdpHttp,
    code: &str,
    redirect_uri: &str,
    pkce_verifier: Option<&str>,
) -> Result<TokenResponse, OidcError> {
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| OidcError::Invalid(format!("redirect URL: {e}")))?;
    let call = http.call(IdpEndpoint::Token);
    let mut req = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_redirect_uri(Cow::Owned(redirect));
    if let Some(v) = pkce_verifier {
        req = req.set_pkce_verifier(PkceCodeVerifier::new(v.to_owned()));
    }
    let res = req.request_async(&call).await;
    res.map_err(|e| token_error(e, &call))
}

/// Redeems a refresh token (OIDC Core 12).
pub async fn exchange_refresh(
    client: &Client,
    http: &IdpHttp,
    refresh_token: &str,
) -> Result<TokenResponse, OidcError> {
    let call = http.call(IdpEndpoint::Refresh);
    let token = RefreshToken::new(refresh_token.to_owned());
    let res = client
        .exchange_refresh_token(&token)
        .request_async(&call)
        .await;
    res.map_err(|e| token_error(e, &call))
}

/// RFC 6749 5.2 errors: `invalid_grant` (on 400/401) ends the session; other
/// refusals are [`OidcError::Rejected`]; a 5xx or no answer is the IdP being
/// down; a 200 that is not a token response is [`OidcError::Invalid`], unless
/// only its `id_token` is malformed, which is a bad token.
fn token_error(
    e: RequestTokenError<super::http::TransportError, TokenError>,
    call: &IdpCall<'_>,
) -> OidcError {
    let status = call.last_status();
    match e {
        RequestTokenError::Request(t) => t.into(),
        RequestTokenError::ServerResponse(err) => {
            let code = serde_json::to_value(err.error())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            if matches!(status, 400 | 401) && code == "invalid_grant" {
                OidcError::InvalidGrant
            } else {
                OidcError::Rejected(format!("status {status} ({code})"))
            }
        }
        RequestTokenError::Parse(err, _) if status == 200 => {
            if err.path().to_string().starts_with("id_token") {
                OidcError::Token("malformed ID token".into())
            } else {
                OidcError::Invalid(format!("token response: {}", err.inner()))
            }
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) if status != 200 => {
            OidcError::Rejected(format!("status {status}"))
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
            OidcError::Invalid("token response".into())
        }
    }
}

/// The userinfo claims (OIDC Core 5.3) for `access_token`, as JSON. Errors:
/// no endpoint or an unreadable answer is [`OidcError::Invalid`]; a refusal
/// [`OidcError::Rejected`]; the IdP down [`OidcError::Unreachable`].
pub async fn userinfo(
    client: &Client,
    http: &IdpHttp,
    url: &Url,
    access_token: &str,
) -> Result<Map<String, Value>, OidcError> {
    // The crate panics on a token that is no header value; refuse it first.
    if http::HeaderValue::from_str(&format!("Bearer {access_token}")).is_err() {
        return Err(OidcError::Invalid(
            "access token is not a header value".into(),
        ));
    }
    let client = client
        .clone()
        .set_user_info_url(UserInfoUrl::from_url(url.clone()));
    let call = http.call(IdpEndpoint::Userinfo);
    let req = client.user_info(AccessToken::new(access_token.to_owned()), None);
    let claims: openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim> =
        req.request_async(&call).await.map_err(|e| match e {
            UserInfoError::Request(t) => OidcError::from(t),
            UserInfoError::Response(status, _, _) if !status.is_success() => {
                OidcError::Rejected(format!("status {}", status.as_u16()))
            }
            e => OidcError::Invalid(format!("userinfo: {e}")),
        })?;
    match serde_json::to_value(&claims) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(OidcError::Invalid("userinfo is not a JSON object".into())),
    }
}
