//! The validated configuration the program runs on (typed, not serde):
//! `config::load` builds it from the file DTO once, so no request path ever
//! re-parses a string or unwraps an `Option` that validation already settled.
//! Secrets (client secret, cookie key, Redis passwords) are
//! [`Secret`]s, so `{:?}` of a `Config` never prints them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use url::Url;

use super::dns::UpstreamAddr;
use crate::domain::Secret;

/// The whole validated configuration, one field per section of the file.
#[derive(Debug, Clone)]
pub struct Config {
    /// `server`: listeners, trusted proxies, TLS, threads.
    pub server: Server,
    /// `provider`: the OpenID provider and this client's registration.
    pub provider: Provider,
    /// `cookie`: the session cookie's name, key and attributes.
    pub cookie: Cookie,
    /// `session`: where sessions are stored.
    pub session: Session,
    /// `authorization`: who is let in, and which routes skip authentication.
    pub authorization: Authorization,
    /// `redirect`: where `rd=` may send the browser after sign-in/out.
    pub redirect: Redirect,
    /// `upstreams`: where the proxy forwards, longest path prefix first.
    pub upstreams: Vec<Upstream>,
    /// `headers`: what the upstream is told about the user.
    pub headers: Headers,
    /// `policies`: per host / path / method rules, first match wins.
    pub policies: Policies,
    /// `assertion`: the signed identity assertion for upstreams; None when off.
    pub assertion: Option<Assertion>,
    /// `telemetry`: the decision log and tracing settings.
    pub telemetry: Telemetry,
}

/// `telemetry`: what is recorded about each request.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    /// One decision line per request on stderr (`crate::access_log`).
    pub access_log: bool,
    /// The OTLP/gRPC collector as `scheme://host:port` (`crate::telemetry::trace`);
    /// None: no tracing.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the traces.
    pub service_name: String,
    /// Fraction of new traces sampled, 0.0 to 1.0.
    pub sample_ratio: f64,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            access_log: false,
            otlp_endpoint: None,
            service_name: "authgate".into(),
            sample_ratio: 1.0,
        }
    }
}

/// `server`: the listeners and how far forwarded headers are believed.
#[derive(Debug, Clone)]
pub struct Server {
    /// The proxy listener (also `/oauth2/*`, `/ping`, `/ready`).
    pub listen: SocketAddr,
    /// Envoy HTTP ext_authz check listener, when enabled.
    pub ext_authz_http: Option<SocketAddr>,
    /// Envoy gRPC ext_authz (v3) listener, when enabled.
    pub ext_authz_grpc: Option<SocketAddr>,
    /// Prometheus `GET /metrics` listener, when enabled.
    pub metrics: Option<SocketAddr>,
    /// Stripped from paths on the ext_authz HTTP listener ("" = none).
    pub ext_authz_path_prefix: String,
    /// Peers whose `X-Forwarded-Proto/Host/For` are believed (none by default).
    pub trusted_proxies: Vec<IpNet>,
    /// TLS on `listen`, when configured.
    pub tls: Option<Tls>,
    /// Worker threads per service; already resolved (0 in the file = cores).
    pub threads: usize,
    /// How long SIGTERM waits for in-flight requests (`server.shutdown_grace`, default 5s).
    pub shutdown_grace: Duration,
    /// The Unix socket through which `authgate run --upgrade` takes over the
    /// listening sockets of the running process (`server.upgrade_sock`,
    /// default `<temp dir>/authgate_upgrade.sock`).
    pub upgrade_sock: PathBuf,
}

/// `server.tls`: PEM files, checked readable at load time.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
}

/// `provider`: the OpenID provider and this client's registration with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// The issuer (`iss`); discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer_url: Url,
    /// This client's id at the IdP (also the expected `aud`).
    pub client_id: String,
    /// This client's secret (inline or from `client_secret_file`); empty for a
    /// public client. Never printed.
    pub client_secret: Secret<String>,
    /// Scopes asked for; always includes `openid`.
    pub scopes: Vec<String>,
    /// None: derived per request as `<scheme>://<host>/oauth2/callback`.
    pub redirect_url: Option<Url>,
    /// None when `discovery: true`; Some when the endpoints are given by hand.
    pub endpoints: Option<Endpoints>,
    /// RP-initiated logout: set by hand (either discovery mode), else the
    /// discovered one is used.
    pub end_session_endpoint: Option<Url>,
    /// PKCE (RFC 7636, S256) on the authorization code flow.
    pub pkce: bool,
    /// Extra accepted `aud` values besides `client_id` (e.g. Keycloak's).
    pub audiences: Vec<String>,
    /// Fixed parameters added to every authorization request (e.g.
    /// `kc_idp_hint`, `prompt`), sorted by name; never one authgate sets itself.
    pub extra_auth_params: Vec<(String, String)>,
    /// Where each identity field is read from in the claims.
    pub claims: Claims,
    /// Accept an ID token with `email_verified: false`.
    pub allow_unverified_email: bool,
    /// Extra PEM CA bundle for the IdP's TLS.
    pub ca_file: Option<PathBuf>,
}

/// The IdP's endpoints given by hand (`provider.discovery: false`).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: Url,
    /// Where codes and refresh tokens are redeemed.
    pub token_endpoint: Url,
    /// The OIDC UserInfo endpoint.
    pub userinfo_endpoint: Url,
    /// The IdP's signing keys (JWKS).
    pub jwks_uri: Url,
    /// RP-initiated logout, when the IdP has one.
    pub end_session_endpoint: Option<Url>,
}

/// Claim paths, each already split on `.` (`realm_access.roles` -> ["realm_access", "roles"]).
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `provider.claims.user` (default `email`).
    pub user: ClaimPath,
    /// `provider.claims.email` (default `email`).
    pub email: ClaimPath,
    /// `provider.claims.groups` (default `groups`).
    pub groups: ClaimPath,
    /// `provider.claims.preferred_username` (default `preferred_username`).
    pub preferred_username: ClaimPath,
}

/// A claim name or dotted path, split into its non-empty segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath(pub Vec<String>);

/// `cookie`: the session cookie (RFC 6265) and the key that seals it.
#[derive(Debug, Clone)]
pub struct Cookie {
    /// Cookie name (an RFC 7230 token; `__Host-`/`__Secure-` rules checked).
    pub name: String,
    /// 16, 24 or 32 raw bytes, decoded from raw / base64 / base64url.
    /// Never printed.
    pub secret: Secret<Vec<u8>>,
    /// Earlier secrets (`previous_secrets` and `previous_secrets_file`, one
    /// per line): sessions sealed with them still open and are re-sealed
    /// with `secret` on their next response. Never printed.
    pub previous_secrets: Vec<Secret<Vec<u8>>>,
    /// `Domain` attributes; empty: a host-only cookie.
    pub domains: Vec<String>,
    /// `Path` attribute, starting with `/`.
    pub path: String,
    /// `Secure` attribute.
    pub secure: bool,
    /// `HttpOnly` attribute.
    pub http_only: bool,
    /// `SameSite` attribute.
    pub same_site: SameSite,
    /// Session lifetime (cookie `Max-Age`, Redis TTL); greater than zero.
    pub expire: Duration,
    /// None when `refresh: 0s`.
    pub refresh: Option<Duration>,
}

/// The cookie's `SameSite` attribute (RFC 6265bis §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Lax` (the default).
    Lax,
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=None`; requires `Secure`.
    None,
}

/// `session.store`: where a session lives.
#[derive(Debug, Clone)]
pub enum Session {
    /// Sealed into the cookie itself (the default).
    Cookie,
    /// In Redis; the cookie holds a sealed ticket.
    Redis(Redis),
}

/// `session.redis`: the Redis servers and credentials, parsed once from
/// `session.redis.url`; the session layer builds its client from this and
/// never parses the URL again, so what `check` accepts `run` can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redis {
    /// Which servers to ask (single, Sentinel or Cluster).
    pub topology: RedisTopology,
    /// TLS to the data nodes (`rediss…` schemes), certificates verified.
    /// Sentinels themselves are always asked in plain TCP.
    pub tls: bool,
    /// Database number (`SELECT`); 0 unless the URL names one, always 0 on a cluster.
    pub db: i64,
    /// ACL user name (Redis 6+), percent-decoded; None for the default user.
    pub username: Option<String>,
    /// Password, percent-decoded. Never printed.
    pub password: Option<Secret<String>>,
    /// Wire protocol (`?protocol=resp3`); RESP2 unless asked.
    pub protocol: RedisProtocol,
    /// `session.redis.sentinel_password` (or `_file`): what the sentinels
    /// themselves require (their `requirepass`), separate from the master's
    /// (oauth2-proxy's `--redis-sentinel-password`). None: sentinels are
    /// asked without one, or with the master's if they answer `NOAUTH`.
    pub sentinel_password: Option<Secret<String>>,
}

/// The Redis deployment behind `session.redis.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One server: `redis://host[:port][/db]`, `rediss://…`, or a Unix
    /// socket (`unix:///path?db=N`, `redis+unix:///path`).
    Single(RedisAddr),
    /// `redis+sentinel://s1[:port],s2[:port]/<master>[/db]`: the sentinels
    /// are asked (without credentials or TLS) for the master named `master`;
    /// credentials, TLS and db apply to the master.
    Sentinel {
        /// Sentinel addresses (port 6379 when not written, as the redis crate does).
        sentinels: Vec<RedisNode>,
        /// The monitored master's name.
        master: String,
    },
    /// `redis+cluster://n1[:port],n2[:port]`: seed nodes of a Redis Cluster.
    Cluster {
        /// Seed nodes; the rest of the cluster is discovered from them.
        nodes: Vec<RedisNode>,
    },
}

/// Where a single Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// TCP (with TLS when [`Redis::tls`]).
    Tcp(RedisNode),
    /// A Unix domain socket.
    Unix(PathBuf),
}

/// One `host:port`: a DNS name, or an IP address (IPv6 without brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisNode {
    /// Host name or IP address, as it will be resolved at connect time.
    pub host: String,
    /// TCP port; 6379 when the URL has none.
    pub port: u16,
}

/// The RESP version spoken to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisProtocol {
    /// RESP2 (every Redis).
    #[default]
    Resp2,
    /// RESP3 (Redis 6+), `?protocol=resp3` or `?protocol=3`.
    Resp3,
}

/// `authorization`: who is let in once authenticated, and the exceptions.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// Lower-cased; `*` alone means any domain.
    pub email_domains: Vec<String>,
    /// Lower-cased.
    pub allowed_emails: Vec<String>,
    /// Any one of these groups admits; empty: any authenticated user.
    pub allowed_groups: Vec<String>,
    /// Routes served with no authentication at all.
    pub skip_auth_routes: Vec<Route>,
    /// Path regexes answered 401 instead of a redirect to sign-in.
    pub api_routes: Vec<Regex>,
    /// Let CORS preflight `OPTIONS` requests through unauthenticated.
    pub skip_preflight: bool,
    /// Accept `Authorization: Bearer <JWT>` from the issuer.
    pub bearer_tokens: bool,
    /// Other issuers whose bearer JWTs are accepted, each with its audience.
    pub extra_jwt_issuers: Vec<ExtraIssuer>,
}

/// `REGEX` or `METHOD=REGEX`, matched against the normalised path only.
#[derive(Debug, Clone)]
pub struct Route {
    /// Upper-cased; None = any method.
    pub method: Option<String>,
    /// Matched against the normalised path.
    pub path: Regex,
}

/// `authorization.extra_jwt_issuers[]`: another issuer whose bearer JWTs count.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraIssuer {
    /// The issuer (`iss`), discovered like the provider's.
    pub issuer_url: Url,
    /// The `aud` its tokens must carry.
    pub audience: String,
}

/// `redirect`: where post-sign-in/out redirects may go.
#[derive(Debug, Clone)]
pub struct Redirect {
    /// Lower-cased; a leading `.` means "this domain's subdomains".
    pub allowed_domains: Vec<String>,
}

/// `upstreams[]`: one backend the proxy forwards to.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// Path prefix, always starting with `/`.
    pub path: String,
    /// The backend's base URL (http or https).
    pub url: Url,
    /// An IP address, or a host name the proxy resolves in the background
    /// (never while loading, never on the request path: Pingora's
    /// `HttpPeer::new` would resolve with blocking DNS and panic on failure).
    pub addr: UpstreamAddr,
    /// TLS to the backend (`https` URL).
    pub tls: bool,
    /// `host` override, or None to keep the client's Host.
    pub host: Option<String>,
}

/// `headers`: what the upstream is told about the user.
#[derive(Debug, Clone)]
pub struct Headers {
    /// Send `Authorization: Bearer <ID token>` upstream.
    pub pass_authorization: bool,
    /// Send `X-Forwarded-Access-Token` upstream.
    pub pass_access_token: bool,
    /// Identity headers set on allowed requests (and stripped from clients').
    pub identity: Vec<IdentityHeader>,
}

/// `headers.identity[]`: one header and the identity field it carries.
#[derive(Debug, Clone)]
pub struct IdentityHeader {
    /// As written in the config (case kept for the wire).
    pub name: http::HeaderName,
    /// The identity field it carries.
    pub claim: IdentityClaim,
}

/// Which identity field a header carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityClaim {
    /// The configured user claim.
    User,
    /// The e-mail address.
    Email,
    /// `preferred_username`.
    PreferredUsername,
    /// Group names, joined with `,`.
    Groups,
}

// === policies and assertion (issue 12) ===

/// `policies`: the list in order (first match wins) and what the session
/// must keep for them.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    /// In the file's order.
    pub list: Vec<Policy>,
    /// Some expression reads `claims`: sessions keep the verified ID
    /// token's claims (a bigger cookie; see the README).
    pub need_claims: bool,
}

/// `policies[i]`: one rule for the requests it matches.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Unique; names the policy in 403 pages, metrics and `policy explain`.
    pub name: String,
    /// Lower-cased exact hosts, or `.example.com` for its subdomains; empty
    /// = any host. Compared without the request's port.
    pub hosts: Vec<String>,
    /// Regexes on the normalised path (as `skip_auth_routes`); empty = any.
    pub paths: Vec<Regex>,
    /// Upper-cased; empty = any method.
    pub methods: Vec<String>,
    /// A match needs no authentication at all.
    pub skip_auth: bool,
    /// Any one admits; empty: no group condition.
    pub allowed_groups: Vec<String>,
    /// Lower-cased addresses; with `email_domains`, either admits.
    pub allowed_emails: Vec<String>,
    /// Lower-cased domains (`*` = any); with `allowed_emails`, either admits.
    pub email_domains: Vec<String>,
    /// The CEL condition, compiled at load time.
    pub expression: Option<PolicyExpression>,
}

/// `policies[i].expression`: CEL over `claims`, `identity` and `request`,
/// parsed and checked at load time.
#[derive(Debug, Clone)]
pub struct PolicyExpression {
    /// As written in the file.
    pub source: String,
    /// The compiled program (shared: `cel::Program` is not `Clone`).
    pub program: std::sync::Arc<cel::Program>,
    /// It reads the `claims` variable.
    pub uses_claims: bool,
}

/// `assertion`: a compact JWS (ES256) for the upstream on every allow.
#[derive(Debug, Clone)]
pub struct Assertion {
    /// The header it is sent in (also stripped from clients' requests).
    pub header: http::HeaderName,
    /// The P-256 signing key, read from `signing_key_file` (re-read on reload).
    pub signing_key: Secret<p256::SecretKey>,
    /// Public keys still published at `/oauth2/jwks.json` (rotation).
    pub previous_public_keys: Vec<p256::PublicKey>,
    /// `iss` (default `authgate`).
    pub issuer: String,
    /// `aud`; None = the request's host.
    pub audience: Option<String>,
    /// `exp - iat`; at least 10 seconds.
    pub lifetime: Duration,
}
