//! The OpenID Connect relying party: one [`Provider`] that discovers the IdP,
//! keeps its keys, runs the login (authorization URL, code exchange, ID-token
//! verification, refresh, userinfo) and verifies bearer and back-channel
//! logout tokens.
//!
//! The login runs on `openidconnect` ([`discovery`], [`client`],
//! [`id_token`]) over authgate's own HTTP client ([`http`]: timeouts, no
//! redirects, `ca_file`, metrics) and its own JWKS cache ([`jwks`]: refetch
//! on an unknown `kid`, single-flight; rate-limited for client-presented
//! tokens). Bearer and logout tokens, which are not ID tokens, stay on
//! `jsonwebtoken` ([`verify`]) against the same cache.
//!
//! Discovery runs in [`Provider::maintain`], one probe at a time: the first
//! probes come tens of milliseconds apart (the IdP is often a moment behind
//! authgate at start-up), then every [`PROBE_INTERVAL`]. A request that needs
//! an issuer not yet discovered wakes that loop and waits up to
//! [`DISCOVERY_WAIT`] for it (every waiting request on the same probes,
//! never one each), then fails with [`OidcError::NotReady`] (a 503).

pub mod claims;
pub mod client;
pub mod discovery;
pub mod http;
pub mod id_token;
pub mod jwks;
mod verify;

pub use verify::{constant_time_eq, Bearer};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use openidconnect::{OAuth2TokenResponse, TokenResponse as _};
use serde_json::{Map, Value};
use url::Url;

pub use discovery::Metadata;
use http::IdpHttp;
use jwks::Jwks;

use crate::config;
use crate::domain::{Identity, Secret};
use crate::metrics::{Dependency, Metrics};

/// While the IdP is down (or not yet discovered) it is re-probed this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// The pause after the first probe at start-up; it doubles after each probe
/// up to [`PROBE_INTERVAL`], so an IdP that starts with authgate is found
/// within tens of milliseconds without a tight loop against one that is down.
pub const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(20);
/// While a request waits for discovery, probes come at least this often.
pub const ON_DEMAND_PROBE_GAP: Duration = Duration::from_millis(100);
/// How long a request that needs an issuer not yet discovered waits for it
/// before failing with [`OidcError::NotReady`].
pub const DISCOVERY_WAIT: Duration = Duration::from_millis(2500);
/// A probe gives up after this, so probes stay under 5 s apart.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// While it is up, keys are refreshed this often even without an unknown `kid`.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Why an IdP call or a token failed. Front ends answer the first two and
/// [`OidcError::Invalid`] with a 5xx (the IdP is unavailable), the others as a
/// refusal. Messages never carry a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    /// No usable answer: connection, timeout or a 5xx.
    #[error("identity provider unreachable: {0}")]
    Unreachable(String),
    /// A 4xx other than `invalid_grant` (RFC 6749 5.2).
    #[error("identity provider rejected the request: {0}")]
    Rejected(String),
    /// `invalid_grant`: the code or refresh token is spent or revoked.
    #[error("identity provider refused the grant")]
    InvalidGrant,
    /// An answer that is not what the protocol says (bad JSON, wrong issuer).
    #[error("invalid identity provider response: {0}")]
    Invalid(String),
    /// Discovery has not succeeded yet.
    #[error("identity provider not discovered yet")]
    NotReady,
    /// A token failed verification, or its email is unverified.
    #[error("token rejected: {0}")]
    Token(String),
    /// Start-up configuration (CA file, HTTP client).
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

    /// The discovered (or configured) endpoints, once known.
    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.metadata.load_full()
    }

    fn ready(&self) -> bool {
        self.discovered() && self.jwks.load().as_ref().is_some_and(|j| j.is_loaded())
    }

    /// Whether its endpoints are known (discovered or configured): all a
    /// login needs; keys missing then are fetched on the first token.
    fn discovered(&self) -> bool {
        self.metadata.load().is_some()
    }

    /// Discovers (when needed) and loads keys. Idempotent.
    async fn initialise(&self, http: &IdpHttp) -> Result<(), OidcError> {
        if self.metadata.load().is_none() && self.discover {
            let found = discovery::discover(&self.issuer_url, http).await?;
            // The crate fetched the keys with the document: no second fetch.
            let jwks = Jwks::new(found.metadata.jwks_uri.clone());
            jwks.seed(&found.jwks)?;
            self.jwks.store(Some(Arc::new(jwks)));
            self.metadata.store(Some(Arc::new(found.metadata)));
            return Ok(());
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

/// What a code redemption or refresh yields. Tokens print as `[redacted]`.
#[derive(Debug, Clone)]
pub struct Login {
    /// Who signed in, mapped through `provider.claims`.
    pub identity: Identity,
    /// The `sub` claim; empty only when a refresh answered without one.
    pub sub: String,
    /// The IdP session (`sid`), for back-channel logout.
    pub sid: Option<String>,
    /// The raw ID token (for `pass_authorization` and `id_token_hint`).
    pub id_token: Option<Secret<String>>,
    /// The access token (for `pass_access_token` and userinfo).
    pub access_token: Option<Secret<String>>,
    /// The refresh token, when the IdP issued (or kept) one.
    pub refresh_token: Option<Secret<String>>,
    /// When the access token expires, if the IdP said.
    pub expires_in: Option<Duration>,
    /// Every verified claim (ID token, completed by userinfo): what
    /// `policies[].expression` reads as `claims` when sessions keep them.
    pub claims: Map<String, Value>,
}

pub use crate::domain::LogoutTarget;

/// The tokens of one token response, redacted in `Debug`.
struct Tokens {
    id_token: Option<Secret<String>>,
    access_token: Secret<String>,
    refresh_token: Option<Secret<String>>,
    expires_in: Option<Duration>,
}

impl Tokens {
    fn from_response(res: &client::TokenResponse, kept_refresh: Option<&str>) -> Tokens {
        Tokens {
            id_token: res.id_token().map(|t| Secret::new(t.to_string())),
            access_token: Secret::new(res.access_token().secret().clone()),
            refresh_token: res
                .refresh_token()
                .map(|t| t.secret().clone())
                .or_else(|| kept_refresh.map(str::to_owned))
                .map(Secret::new),
            expires_in: res.expires_in(),
        }
    }
}

/// The configured OpenID provider plus the `extra_jwt_issuers`, shared by
/// every front end; see the module doc.
pub struct Provider {
    cfg: config::Provider,
    http: IdpHttp,
    primary: Issuer,
    extra: Vec<(Issuer, IdpHttp)>,
    up: AtomicBool,
    metrics: Metrics,
    /// Bumped after every probe; a request waiting for discovery holds a
    /// receiver, so the count of receivers is the count of waiters.
    probed: tokio::sync::watch::Sender<u64>,
    /// Wakes the probe loops from their pause when a request starts waiting.
    wake: tokio::sync::Notify,
}

impl Provider {
    /// Builds the provider from config; no I/O ([`Provider::maintain`]
    /// discovers). Errors only on a bad `provider.ca_file`.
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
            probed: tokio::sync::watch::Sender::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Discovery done and keys loaded: `/ready` waits for this once; a later
    /// outage does not undo it.
    pub fn is_ready(&self) -> bool {
        self.primary.ready()
    }

    /// The provider's endpoints, once discovered (or as configured).
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
    /// the life of the process in a background service. The provider and the
    /// extra issuers are probed by two loops, so a slow extra issuer never
    /// delays the provider's discovery.
    pub async fn maintain(&self) {
        futures::join!(self.maintain_primary(), self.maintain_extras());
    }

    async fn maintain_primary(&self) {
        let mut since_refresh = std::time::Instant::now();
        let mut pause = FIRST_PROBE_PAUSE;
        loop {
            let down = !self.primary.ready() || !self.up.load(Ordering::Acquire);
            if down || since_refresh.elapsed() >= JWKS_REFRESH_INTERVAL {
                let r = tokio::time::timeout(PROBE_TIMEOUT, self.primary.initialise(&self.http))
                    .await
                    .unwrap_or_else(|_| Err(OidcError::Unreachable("probe timed out".into())));
                if let Err(e) = &r {
                    tracing::warn!(error = %e, "identity provider probe failed");
                }
                let _ = self.observe(r);
                since_refresh = std::time::Instant::now();
                self.probed.send_modify(|n| *n = n.wrapping_add(1));
            }
            self.pause(pause, || !self.primary.discovered()).await;
            pause = (pause * 2).min(PROBE_INTERVAL);
        }
    }

    async fn maintain_extras(&self) {
        if self.extra.is_empty() {
            return;
        }
        let mut pause = FIRST_PROBE_PAUSE;
        let undiscovered = || self.extra.iter().any(|(i, _)| !i.discovered());
        loop {
            let probes = self.extra.iter().filter(|(i, _)| !i.ready()).map(
                |(issuer, http)| async move {
                    match tokio::time::timeout(PROBE_TIMEOUT, issuer.initialise(http)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(issuer = %issuer.issuer_url, error = %e, "extra JWT issuer not ready")
                        }
                        Err(_) => tracing::warn!(issuer = %issuer.issuer_url, "extra JWT issuer probe timed out"),
                    }
                },
            );
            let probes: Vec<_> = probes.collect();
            if !probes.is_empty() {
                futures::future::join_all(probes).await;
                self.probed.send_modify(|n| *n = n.wrapping_add(1));
            }
            self.pause(pause, undiscovered).await;
            pause = (pause * 2).min(PROBE_INTERVAL);
        }
    }

    /// Sleeps `period` after a probe, cut to [`ON_DEMAND_PROBE_GAP`] while a
    /// request waits for an issuer this loop has `undiscovered`.
    async fn pause(&self, period: Duration, undiscovered: impl Fn() -> bool) {
        let from = tokio::time::Instant::now();
        loop {
            // Registered before the check, so a waiter arriving in between
            // still wakes us.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let waited_for = self.probed.receiver_count() > 0 && undiscovered();
            let gap = if waited_for {
                period.min(ON_DEMAND_PROBE_GAP)
            } else {
                period
            };
            tokio::select! {
                _ = tokio::time::sleep_until(from + gap) => return,
                _ = woken => {}
            }
        }
    }

    /// Waits up to [`DISCOVERY_WAIT`] for `issuer`'s discovery, waking the
    /// probe loop; true once discovered. No lock is held while waiting, and
    /// no request probes itself: every waiter watches the same probes.
    async fn await_discovery(&self, issuer: &Issuer) -> bool {
        if issuer.discovered() {
            return true;
        }
        let mut probed = self.probed.subscribe();
        self.wake.notify_waiters();
        let discovered = async {
            while !issuer.discovered() {
                if probed.changed().await.is_err() {
                    // Only when the provider is dropped; the timeout ends it.
                    std::future::pending::<()>().await;
                }
            }
        };
        let _ = tokio::time::timeout(DISCOVERY_WAIT, discovered).await;
        issuer.discovered()
    }

    /// The provider's endpoints, waiting up to [`DISCOVERY_WAIT`] for a
    /// discovery still to come. Front ends call it before a step that needs
    /// them (the login redirect, the IdP's end-session URL); `None` means
    /// answer 503.
    pub async fn discovered(&self) -> Option<Arc<Metadata>> {
        self.await_discovery(&self.primary).await;
        self.metadata()
    }

    /// The IdP authorization URL of one login flow (state, nonce and, with a
    /// PKCE verifier, its S256 challenge; `prompt` and the configured extras).
    /// [`OidcError::NotReady`] before discovery: the front end awaits
    /// [`Provider::discovered`] first. Called by the login redirect on every
    /// front end; no I/O.
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        flow: &client::AuthFlow<'_>,
    ) -> Result<Url, OidcError> {
        let md = self.metadata().ok_or(OidcError::NotReady)?;
        let client = client::build(&self.cfg, &md)?;
        client::authorization_url(&client, &self.cfg, redirect_uri, flow)
    }

    /// Redeems an authorization code and verifies the ID token it yields
    /// against the flow's nonce.
    pub async fn redeem(
        &self,
        code: &str,
        redirect_uri: &str,
        pkce_verifier: Option<&str>,
        nonce: &str,
    ) -> Result<Login, OidcError> {
        let md = self.discovered().await.ok_or(OidcError::NotReady)?;
        let client = client::build(&self.cfg, &md)?;
        let res = self.observe(
            client::exchange_code(&client, &self.http, code, redirect_uri, pkce_verifier).await,
        )?;
        let id_token = res
            .id_token()
            .ok_or_else(|| OidcError::Invalid("token response without id_token".into()))?;
        let access_token = res.access_token().secret().as_str();
        let claims = self
            .verify_id_token(id_token, Some(nonce), Some(access_token))
            .await?;
        let tokens = Tokens::from_response(&res, None);
        self.login_from(&client, tokens, claims, &md).await
    }

    /// Redeems a refresh token. `invalid_grant` means the session is over.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Login, OidcError> {
        let md = self.discovered().await.ok_or(OidcError::NotReady)?;
        let client = client::build(&self.cfg, &md)?;
        let res =
            self.observe(client::exchange_refresh(&client, &self.http, refresh_token).await)?;
        let access_token = res.access_token().secret().as_str();
        // RFC 6749 6: the IdP may keep the old refresh token.
        let tokens = Tokens::from_response(&res, Some(refresh_token));
        let claims = match res.id_token() {
            Some(t) => self.verify_id_token(t, None, Some(access_token)).await?,
            None => self.userinfo(&client, &md, access_token).await?,
        };
        self.login_from(&client, tokens, claims, &md).await
    }

    async fn login_from(
        &self,
        client: &client::Client,
        tokens: Tokens,
        mut claims: Map<String, Value>,
        md: &Metadata,
    ) -> Result<Login, OidcError> {
        if claims::incomplete(&claims, &self.cfg.claims) && md.userinfo_endpoint.is_some() {
            let extra = self
                .userinfo(client, md, tokens.access_token.expose())
                .await?;
            // OIDC Core 5.3.2: userinfo `sub` must match the ID token's.
            if extra.get("sub") == claims.get("sub") {
                for (k, v) in extra {
                    claims.entry(k).or_insert(v);
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
            id_token: tokens.id_token,
            access_token: Some(tokens.access_token),
            refresh_token: tokens.refresh_token,
            expires_in: tokens.expires_in,
            claims,
        })
    }

    async fn userinfo(
        &self,
        client: &client::Client,
        md: &Metadata,
        access_token: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let url = md
            .userinfo_endpoint
            .as_ref()
            .ok_or_else(|| OidcError::Invalid("no userinfo endpoint".into()))?;
        self.observe(client::userinfo(client, &self.http, url, access_token).await)
    }

    async fn verify_id_token(
        &self,
        token: &client::IdToken,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> Result<Map<String, Value>, OidcError> {
        let jwks = self.primary.jwks.load_full().ok_or(OidcError::NotReady)?;
        let issuer = self.primary.expected_iss();
        let expected = id_token::Expected {
            client_id: &self.cfg.client_id,
            issuer: &issuer,
            audiences: &self.cfg.audiences,
            nonce,
            access_token,
        };
        id_token::verify(token, &jwks, &self.http, &expected).await
    }

    /// Verifies `Authorization: Bearer` JWTs from the provider or an
    /// `extra_jwt_issuers` entry.
    pub async fn verify_bearer(&self, token: &str) -> Result<Identity, OidcError> {
        let bearer = self.verify_bearer_claims(token).await?;
        Ok(Identity::clone(&bearer.identity))
    }

    /// [`Provider::verify_bearer`], returning the whole verified token
    /// (identity, `sub`, the claims `policies[].expression` reads), shared.
    /// A token an issuer's current key set verified before is answered from
    /// that cache first, before any decoding, while it is before its `exp`
    /// (see [`jwks::Jwks::verified`]).
    pub async fn verify_bearer_claims(&self, token: &str) -> Result<Arc<Bearer>, OidcError> {
        let now = crate::clock::unix_now();
        let issuers = std::iter::once(&self.primary).chain(self.extra.iter().map(|(i, _)| i));
        if let Some(known) = verify::cached_bearer(issuers, token, now) {
            return Ok(known);
        }
        let iss = verify::peek_issuer(token)?;
        // Before discovery an issuer's exact `iss` is not known yet (a
        // trailing `/` or not): pick it loosely, wait for its discovery, and
        // let verification compare `iss` exactly.
        let loose =
            |i: &Issuer| i.expected_iss().trim_end_matches('/') == iss.trim_end_matches('/');
        let (issuer, http) = if loose(&self.primary) {
            (&self.primary, &self.http)
        } else {
            self.extra
                .iter()
                .find(|(i, _)| loose(i))
                .map(|(i, h)| (i, h))
                .ok_or_else(|| OidcError::Token("untrusted issuer".into()))?
        };
        if !self.await_discovery(issuer).await {
            return Err(OidcError::NotReady);
        }
        // Remembered only once accepted here, so a hit needs no check again
        // (these settings are the provider's: a change makes a new provider).
        verify::verify_bearer(issuer, http, token, now, |claims| {
            if claims::email_unverified(claims) && !self.cfg.allow_unverified_email {
                return Err(OidcError::Token("email address is not verified".into()));
            }
            Ok(claims::identity(claims, &self.cfg.claims))
        })
        .await
    }

    /// Verifies an OIDC Back-Channel Logout 1.0 logout token (section 2.6).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutTarget, OidcError> {
        if !self.await_discovery(&self.primary).await {
            return Err(OidcError::NotReady);
        }
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
