//! The validated configuration the program runs on. Nothing here is serde:
//! `config::load` builds it from the file DTO once, so no request path ever
//! re-parses a string or unwraps an `Option` that validation already settled.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use url::Url;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: Server,
    pub provider: Provider,
    pub cookie: Cookie,
    pub session: Session,
    pub authorization: Authorization,
    pub redirect: Redirect,
    pub upstreams: Vec<Upstream>,
    pub headers: Headers,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub ext_authz_http: Option<SocketAddr>,
    pub ext_authz_grpc: Option<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// Stripped from paths on the ext_authz HTTP listener ("" = none).
    pub ext_authz_path_prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    pub tls: Option<Tls>,
    /// Worker threads per service; already resolved (0 in the file = cores).
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests (`server.shutdown_grace`, default 5s).
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Provider {
    pub issuer_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
    /// None: derived per request as `<scheme>://<host>/oauth2/callback`.
    pub redirect_url: Option<Url>,
    /// None when `discovery: true`; Some when the endpoints are given by hand.
    pub endpoints: Option<Endpoints>,
    /// RP-initiated logout: set by hand (either discovery mode), else the
    /// discovered one is used.
    pub end_session_endpoint: Option<Url>,
    pub pkce: bool,
    pub audiences: Vec<String>,
    pub claims: Claims,
    pub allow_unverified_email: bool,
    /// Extra PEM CA bundle for the IdP's TLS.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization_endpoint: Url,
    pub token_endpoint: Url,
    pub userinfo_endpoint: Url,
    pub jwks_uri: Url,
    pub end_session_endpoint: Option<Url>,
}

/// Claim paths, each already split on `.` (`realm_access.roles` -> ["realm_access", "roles"]).
#[derive(Debug, Clone)]
pub struct Claims {
    pub user: ClaimPath,
    pub email: ClaimPath,
    pub groups: ClaimPath,
    pub preferred_username: ClaimPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

#[derive(Debug, Clone)]
pub struct Cookie {
    pub name: String,
    /// 16, 24 or 32 raw bytes, decoded from raw / base64 / base64url.
    pub secret: Vec<u8>,
    pub domains: Vec<String>,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    pub expire: Duration,
    /// None when `refresh: 0s`.
    pub refresh: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

#[derive(Debug, Clone)]
pub enum Session {
    Cookie,
    Redis(Redis),
}

#[derive(Debug, Clone)]
pub struct Redis {
    /// The URL as written (redis://, rediss://, redis+sentinel://, redis+cluster://...).
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Authorization {
    /// Lower-cased; `*` alone means any domain.
    pub email_domains: Vec<String>,
    /// Lower-cased.
    pub allowed_emails: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub skip_auth_routes: Vec<Route>,
    pub api_routes: Vec<Regex>,
    pub skip_preflight: bool,
    pub bearer_tokens: bool,
    pub extra_jwt_issuers: Vec<ExtraIssuer>,
}

/// `REGEX` or `METHOD=REGEX`, matched against the normalised path only.
#[derive(Debug, Clone)]
pub struct Route {
    /// Upper-cased; None = any method.
    pub method: Option<String>,
    pub path: Regex,
}

#[derive(Debug, Clone)]
pub struct ExtraIssuer {
    pub issuer_url: Url,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct Redirect {
    /// Lower-cased; a leading `.` means "this domain's subdomains".
    pub allowed_domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// Path prefix, always starting with `/`.
    pub path: String,
    pub url: Url,
    /// Resolved once at start-up: Pingora's `HttpPeer::new` would resolve
    /// with blocking DNS and panic on failure at request time.
    pub addr: SocketAddr,
    pub tls: bool,
    /// `host` override, or None to keep the client's Host.
    pub host: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Headers {
    pub pass_authorization: bool,
    pub pass_access_token: bool,
    pub identity: Vec<IdentityHeader>,
}

#[derive(Debug, Clone)]
pub struct IdentityHeader {
    /// As written in the config (case kept for the wire).
    pub name: http::HeaderName,
    pub claim: IdentityClaim,
}

/// Which identity field a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityClaim {
    User,
    Email,
    PreferredUsername,
    Groups,
}
