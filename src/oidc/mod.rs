//! The OpenID Connect relying party: discovery, the JWKS cache, code
//! redemption, refresh, and verification of every JWT authgate accepts (ID
//! tokens, bearer tokens, back-channel logout tokens) on one path.
//!
//! Tokens are verified with `jsonwebtoken` against our own JWKS cache rather
//! than through `openidconnect`'s client so that the three token kinds share
//! one verifier, one key cache with refetch-on-unknown-`kid`, and raw claims
//! for dotted `provider.claims` paths.

pub mod claims;
pub mod discovery;
pub mod http;
pub mod jwks;
mod verify;

pub use verify::constant_time_eq;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

pub use discovery::Metadata;
use http::{ClientAuth, IdpHttp};
use jwks::Jwks;

use crate::domain::Identity;
use crate::config;
use crate::metrics::{Dependency, IdpEndpoint, Metrics};

/// While the IdP is down (or not yet discovered) it is re-probed this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// A probe gives up after this, so probes stay under 5 s apart.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// While it is up, keys are refreshed this often even without an unknown `kid`.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    #[error("identity provider rejected the request: {0}")]
    Rejected(String),
    #[error("identity provider refused the grant")]
    InvalidGrant,
    #[error("invalid identity provider response: {0}")]
    Invalid(String),
    #[error("identity provider not discovered yet")]
    NotReady,
    #[error("token rejected: {0}")]
    Token(String),
    #[error("{0}")]
    Config(String),
}

impl OidcError {
    /// Whether the failure is the IdP's availability rather than the input.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, OidcError::Unreachable(_) | OidcError::NotReady)
    }
}

/// One issuer whose tokens we verify: the provider, or an `extra_jwt_issuers` entry.
pub struct Issuer {
    issuer_url: Url,
    /// The `iss` value tokens must carry (the discovered one, else the URL).
    audiences: Vec<String>,
    metadata: ArcSwapOption<Metadata>,
    jwks: ArcSwapOption<Jwks>,
    discover: bool,
}

impl Issuer {
    fn new(issuer_url: Url, audiences: Vec<String>, fixed: Option<Metadata>) -> Self {
        let discover = fixed.is_none();
        let jwks = fixed
            .as_ref()
            .map(|m| Arc::new(Jwks::new(m.jwks_uri.clone())));
        Issuer {
            issuer_url,
            audiences,
            metadata: ArcSwapOption::new(fixed.map(Arc::new)),
            jwks: ArcSwapOption::new(jwks),
            discover,
        }
    }

    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.metadata.load_full()
    }

    fn ready(&self) -> bool {
        self.metadata.load().is_some() && self.jwks.load().as_ref().is_some_and(|j| j.is_loaded())
    }

    /// Discovers (when needed) and loads keys. Idempotent.
    async fn initialise(&self, http: &IdpHttp) -> Result<(), OidcError> {
        if self.metadata.load().is_none() && self.discover {
            let md = discovery::discover(&self.issuer_url, http).await?;
            self.jwks
                .store(Some(Arc::new(Jwks::new(md.jwks_uri.clone()))));
            self.metadata.store(Some(Arc::new(md)));
        }
        let jwks = self.jwks.load_full().ok_or(OidcError::NotReady)?;
        jwks.load(http).await
    }

    fn expected_iss(&self) -> String {
        match self.metadata.load().as_ref() {
            Some(m) => m.issuer.clone(),
            None => self.issuer_url.as_str().trim_end_matches('/').to_owned(),
        }
    }
}

/// What a code redemption or refresh yields.
#[derive(Debug, Clone)]
pub struct Login {
    pub identity: Identity,
    pub sub: String,
    pub sid: Option<String>,
    pub id_token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// When the access token expires, if the IdP said.
    pub expires_in: Option<Duration>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

pub use crate::domain::LogoutTarget;

pub struct Provider {
    cfg: config::Provider,
    http: IdpHttp,
    primary: Issuer,
    extra: Vec<(Issuer, IdpHttp)>,
    up: AtomicBool,
    metrics: Metrics,
}

impl Provider {
    pub fn new(
        cfg: &config::Provider,
        extra: &[config::ExtraIssuer],
        metrics: Metrics,
    ) -> Result<Self, OidcError> {
        let http = IdpHttp::new(cfg.ca_file.as_deref(), metrics.clone())?;
        let fixed = cfg.endpoints.as_ref().map(|e| Metadata {
            issuer: cfg.issuer_url.as_str().trim_end_matches('/').to_owned(),
            authorization_endpoint: e.authorization_endpoint.clone(),
            token_endpoint: e.token_endpoint.clone(),
            userinfo_endpoint: Some(e.userinfo_endpoint.clone()),
            jwks_uri: e.jwks_uri.clone(),
            end_session_endpoint: e.end_session_endpoint.clone(),
            token_auth: vec![],
        });
        let mut audiences = vec![cfg.client_id.clone()];
        audiences.extend(cfg.audiences.iter().cloned());
        let primary = Issuer::new(cfg.issuer_url.clone(), audiences, fixed);
        let extra = extra
            .iter()
            .map(|e| {
                Ok((
                    Issuer::new(e.issuer_url.clone(), vec![e.audience.clone()], None),
                    IdpHttp::new(cfg.ca_file.as_deref(), metrics.clone())?,
                ))
            })
            .collect::<Result<Vec<_>, OidcError>>()?;
        metrics.dependency(Dependency::Idp, false);
        Ok(Provider {
            cfg: cfg.clone(),
            http,
            primary,
            extra,
            up: AtomicBool::new(false),
            metrics,
        })
    }

    /// Discovery done and keys loaded: `/ready` waits for this once; a later
    /// outage does not undo it.
    pub fn is_ready(&self) -> bool {
        self.primary.ready()
    }

    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.primary.metadata()
    }

    fn mark(&self, up: bool) {
        if self.up.swap(up, Ordering::AcqRel) != up {
            if up {
                tracing::info!("identity provider reachable");
            } else {
                tracing::warn!("identity provider unreachable");
            }
        }
        self.metrics.dependency(Dependency::Idp, up);
    }

    /// Records an IdP call's availability outcome.
    fn observe<T>(&self, r: Result<T, OidcError>) -> Result<T, OidcError> {
        match &r {
            Err(OidcError::Unreachable(_)) => self.mark(false),
            _ => self.mark(true),
        }
        r
    }

    /// Keeps discovery, keys and the `idp` dependency gauge fresh; runs for
    /// the life of the process in a background service.
    pub async fn maintain(&self) {
        let mut since_refresh = std::time::Instant::now();
        loop {
            let down = !self.primary.ready() || !self.up.load(Ordering::Acquire);
            let primary = async {
                if down || since_refresh.elapsed() >= JWKS_REFRESH_INTERVAL {
                    let r =
                        tokio::time::timeout(PROBE_TIMEOUT, self.primary.initialise(&self.http))
                            .await
                            .unwrap_or_else(|_| {
                                Err(OidcError::Unreachable("probe timed out".into()))
                            });
                    if let Err(e) = &r {
                        tracing::warn!(error = %e, "identity provider probe failed");
                    }
                    let _ = self.observe(r);
                    since_refresh = std::time::Instant::now();
                }
            };
            // Extra issuers are probed beside the provider, never in its way.
            let extras = futures::future::join_all(self.extra.iter().filter(|(i, _)| !i.ready()).map(
                |(issuer, http)| async move {
                    match tokio::time::timeout(PROBE_TIMEOUT, issuer.initialise(http)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(issuer = %issuer.issuer_url, error = %e, "extra JWT issuer not ready")
                        }
                        Err(_) => tracing::warn!(issuer = %issuer.issuer_url, "extra JWT issuer probe timed out"),
                    }
                },
            ));
            futures::join!(primary, extras);
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The IdP authorization URL of one login flow.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        pkce_challenge: Option<&str>,
    ) -> Result<Url, OidcError> {
        let md = self.metadata().ok_or(OidcError::NotReady)?;
        let mut url = md.authorization_endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.cfg.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.cfg.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("nonce", nonce);
            if let Some(ch) = pkce_challenge {
                q.append_pair("code_challenge", ch)
                    .append_pair("code_challenge_method", "S256");
            }
        }
        Ok(url)
    }

    fn client_auth(&self, md: &Metadata) -> ClientAuth {
        let supports = |m: &str| md.token_auth.iter().any(|a| a == m);
        if !md.token_auth.is_empty()
            && !supports("client_secret_basic")
            && supports("client_secret_post")
        {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        }
    }

    /// One call to the token endpoint, authenticated as the client.
    async fn token_request(
        &self,
        md: &Metadata,
        form: &[(&str, &str)],
        endpoint: IdpEndpoint,
    ) -> Result<TokenResponse, OidcError> {
        let auth = self.client_auth(md);
        let res = self
            .http
            .token(
                &md.token_endpoint,
                auth,
                &self.cfg.client_id,
                &self.cfg.client_secret,
                form,
                endpoint,
            )
            .await;
        self.observe(res)
    }

    /// Redeems an authorization code and verifies the ID token it yields.
    pub async fn redeem(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&str>,
        nonce: &str,
    ) -> Result<Login, OidcError> {
        let md = self.metadata().ok_or(OidcError::NotReady)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = pkce_verifier {
            form.push(("code_verifier", v));
        }
        let res = self.token_request(&md, &form, IdpEndpoint::Token).await?;
        let id_token = res
            .id_token
            .clone()
            .ok_or_else(|| OidcError::Invalid("token response without id_token".into()))?;
        let claims = self.verify_id_token(&id_token, Some(nonce)).await?;
        self.login_from(res, claims, &md).await
    }

    /// Redeems a refresh token. `invalid_grant` means the session is over.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Login, OidcError> {
        let md = self.metadata().ok_or(OidcError::NotReady)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        let mut res = self.token_request(&md, &form, IdpEndpoint::Refresh).await?;
        // RFC 6749 6: the IdP may keep the old refresh token.
        if res.refresh_token.is_none() {
            res.refresh_token = Some(refresh_token.to_owned());
        }
        let claims = match &res.id_token {
            Some(t) => self.verify_id_token(t, None).await?,
            None => {
                let at = res
                    .access_token
                    .as_deref()
                    .ok_or_else(|| OidcError::Invalid("refresh without tokens".into()))?;
                self.userinfo(&md, at).await?
            }
        };
        self.login_from(res, claims, &md).await
    }

    async fn login_from(
        &self,
        res: TokenResponse,
        mut claims: Map<String, Value>,
        md: &Metadata,
    ) -> Result<Login, OidcError> {
        if claims::incomplete(&claims, &self.cfg.claims) {
            if let (Some(at), Some(_)) =
                (res.access_token.as_deref(), md.userinfo_endpoint.as_ref())
            {
                let extra = self.userinfo(md, at).await?;
                // OIDC Core 5.3.2: userinfo `sub` must match the ID token's.
                if extra.get("sub") == claims.get("sub") {
                    for (k, v) in extra {
                        claims.entry(k).or_insert(v);
                    }
                }
            }
        }
        if claims::email_unverified(&claims) && !self.cfg.allow_unverified_email {
            return Err(OidcError::Token("email address is not verified".into()));
        }
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Login {
            identity: claims::identity(&claims, &self.cfg.claims),
            sid: claims.get("sid").and_then(Value::as_str).map(str::to_owned),
            sub,
            id_token: res.id_token,
            access_token: res.access_token,
            refresh_token: res.refresh_token,
            expires_in: res.expires_in.map(Duration::from_secs),
        })
    }

    async fn userinfo(
        &self,
        md: &Metadata,
        access_token: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let url = md
            .userinfo_endpoint
            .as_ref()
            .ok_or_else(|| OidcError::Invalid("no userinfo endpoint".into()))?;
        let v = self.observe(
            self.http
                .get_json_bearer(url, access_token, IdpEndpoint::Userinfo)
                .await,
        )?;
        match v {
            Value::Object(m) => Ok(m),
            _ => Err(OidcError::Invalid("userinfo is not a JSON object".into())),
        }
    }

    async fn verify_id_token(
        &self,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, OidcError> {
        let claims =
            verify::verify(&self.primary, &self.http, token, verify::Kind::IdToken).await?;
        if let Some(expected) = nonce {
            let got = claims.get("nonce").and_then(Value::as_str);
            if got.is_none_or(|g| !verify::constant_time_eq(g, expected)) {
                return Err(OidcError::Token("nonce mismatch".into()));
            }
        }
        verify::check_azp(&claims, &self.cfg.client_id)?;
        Ok(claims)
    }

    /// Verifies `Authorization: Bearer` JWTs from the provider or an
    /// `extra_jwt_issuers` entry.
    pub async fn verify_bearer(&self, token: &str) -> Result<Identity, OidcError> {
        let iss = verify::peek_issuer(token)?;
        let (issuer, http) = if iss == self.primary.expected_iss() {
            (&self.primary, &self.http)
        } else {
            self.extra
                .iter()
                .find(|(i, _)| i.expected_iss() == iss)
                .map(|(i, h)| (i, h))
                .ok_or_else(|| OidcError::Token("untrusted issuer".into()))?
        };
        let claims = verify::verify(issuer, http, token, verify::Kind::Bearer).await?;
        if claims::email_unverified(&claims) && !self.cfg.allow_unverified_email {
            return Err(OidcError::Token("email address is not verified".into()));
        }
        Ok(claims::identity(&claims, &self.cfg.claims))
    }

    /// Verifies an OIDC Back-Channel Logout 1.0 logout token (section 2.6).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutTarget, OidcError> {
        let claims = verify::verify(&self.primary, &self.http, token, verify::Kind::Logout).await?;
        let event = claims
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"));
        if !event.is_some_and(Value::is_object) {
            return Err(OidcError::Token("missing back-channel logout event".into()));
        }
        if claims.contains_key("nonce") {
            return Err(OidcError::Token("logout token carries a nonce".into()));
        }
        let target = LogoutTarget {
            sid: claims.get("sid").and_then(Value::as_str).map(str::to_owned),
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        };
        if target.sid.is_none() && target.sub.is_none() {
            return Err(OidcError::Token(
                "logout token names neither sid nor sub".into(),
            ));
        }
        Ok(target)
    }

    /// RP-initiated logout URL when the IdP publishes one.
    pub fn end_session_url(&self, id_token_hint: Option<&str>, post_logout: &str) -> Option<Url> {
        let mut url = match &self.cfg.end_session_endpoint {
            Some(u) => u.clone(),
            None => self.metadata()?.end_session_endpoint.clone()?,
        };
        {
            let mut q = url.query_pairs_mut();
            if let Some(t) = id_token_hint {
                q.append_pair("id_token_hint", t);
            }
            q.append_pair("post_logout_redirect_uri", post_logout);
            q.append_pair("client_id", &self.cfg.client_id);
        }
        Some(url)
    }
}
