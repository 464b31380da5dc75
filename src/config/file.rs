//! The YAML file as written: serde DTOs that mirror the contract's keys one
//! to one, with its defaults. Nothing here is validated; `config::load` turns
//! these into the typed `model`. Every key has a default, so a missing key is
//! reported by validation under its full path rather than by serde.
//! Text that means "unset" is an empty string, as in the contract's example.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

// === Top level ===

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerFile,
    pub provider: ProviderFile,
    pub cookie: CookieFile,
    pub session: SessionFile,
    pub authorization: AuthorizationFile,
    pub redirect: RedirectFile,
    pub upstreams: Vec<UpstreamFile>,
    pub headers: HeadersFile,
}

// === server ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFile {
    pub listen: String,
    pub ext_authz_http: String,
    pub ext_authz_grpc: String,
    pub metrics: String,
    pub ext_authz_path_prefix: String,
    pub trusted_proxies: Vec<String>,
    pub tls: Option<TlsFile>,
    #[serde(deserialize_with = "flex_usize")]
    pub threads: usize,
    pub shutdown_grace: DurationText,
}

impl Default for ServerFile {
    fn default() -> Self {
        ServerFile {
            listen: "0.0.0.0:4180".into(),
            ext_authz_http: String::new(),
            ext_authz_grpc: String::new(),
            metrics: String::new(),
            ext_authz_path_prefix: String::new(),
            trusted_proxies: Vec::new(),
            tls: None,
            threads: 0,
            shutdown_grace: DurationText("5s".into()),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsFile {
    pub cert_file: String,
    pub key_file: String,
}

// === provider ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderFile {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub client_secret_file: String,
    pub scopes: Vec<String>,
    pub redirect_url: String,
    #[serde(deserialize_with = "flex_bool")]
    pub discovery: bool,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: String,
    #[serde(deserialize_with = "flex_bool")]
    pub pkce: bool,
    pub audiences: Vec<String>,
    pub claims: ClaimsFile,
    #[serde(deserialize_with = "flex_bool")]
    pub allow_unverified_email: bool,
    pub ca_file: String,
}

impl Default for ProviderFile {
    fn default() -> Self {
        ProviderFile {
            issuer_url: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: String::new(),
            scopes: ["openid", "email", "profile", "groups"]
                .map(String::from)
                .to_vec(),
            redirect_url: String::new(),
            discovery: true,
            authorization_endpoint: String::new(),
            token_endpoint: String::new(),
            userinfo_endpoint: String::new(),
            jwks_uri: String::new(),
            end_session_endpoint: String::new(),
            pkce: true,
            audiences: Vec::new(),
            claims: ClaimsFile::default(),
            allow_unverified_email: false,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsFile {
    pub user: String,
    pub email: String,
    pub groups: String,
    pub preferred_username: String,
}

impl Default for ClaimsFile {
    fn default() -> Self {
        ClaimsFile {
            user: "email".into(),
            email: "email".into(),
            groups: "groups".into(),
            preferred_username: "preferred_username".into(),
        }
    }
}

// === cookie ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieFile {
    pub name: String,
    pub secret: String,
    pub secret_file: String,
    pub domains: Vec<String>,
    pub path: String,
    #[serde(deserialize_with = "flex_bool")]
    pub secure: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub http_only: bool,
    pub same_site: String,
    pub expire: DurationText,
    pub refresh: DurationText,
}

impl Default for CookieFile {
    fn default() -> Self {
        CookieFile {
            name: "_oauth2_proxy".into(),
            secret: String::new(),
            secret_file: String::new(),
            domains: Vec::new(),
            path: "/".into(),
            secure: true,
            http_only: true,
            same_site: "lax".into(),
            expire: DurationText("168h".into()),
            refresh: DurationText("0s".into()),
        }
    }
}

// === session ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionFile {
    pub store: String,
    pub redis: RedisFile,
}

impl Default for SessionFile {
    fn default() -> Self {
        SessionFile {
            store: "cookie".into(),
            redis: RedisFile::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisFile {
    pub url: String,
}

impl Default for RedisFile {
    fn default() -> Self {
        RedisFile {
            url: "redis://127.0.0.1:6379/0".into(),
        }
    }
}

// === authorization ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationFile {
    pub email_domains: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub skip_auth_routes: Vec<String>,
    pub api_routes: Vec<String>,
    #[serde(deserialize_with = "flex_bool")]
    pub skip_preflight: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub bearer_tokens: bool,
    pub extra_jwt_issuers: Vec<ExtraIssuerFile>,
}

impl Default for AuthorizationFile {
    fn default() -> Self {
        AuthorizationFile {
            email_domains: vec!["*".into()],
            allowed_emails: Vec::new(),
            allowed_groups: Vec::new(),
            skip_auth_routes: Vec::new(),
            api_routes: Vec::new(),
            skip_preflight: false,
            bearer_tokens: true,
            extra_jwt_issuers: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtraIssuerFile {
    pub issuer_url: String,
    pub audience: String,
}

// === redirect, upstreams ===

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedirectFile {
    pub allowed_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamFile {
    pub path: String,
    pub url: String,
    pub host: String,
}

// === headers ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadersFile {
    #[serde(deserialize_with = "flex_bool")]
    pub pass_authorization: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub pass_access_token: bool,
    pub identity: Vec<IdentityHeaderFile>,
}

impl Default for HeadersFile {
    fn default() -> Self {
        HeadersFile {
            pass_authorization: false,
            pass_access_token: false,
            identity: default_identity_headers(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityHeaderFile {
    pub name: String,
    pub claim: String,
}

/// The contract's default identity headers: oauth2-proxy's
/// `X-Auth-Request-*` (for nginx/Envoy) and `X-Forwarded-*` (for upstreams).
pub fn default_identity_headers() -> Vec<IdentityHeaderFile> {
    [
        ("X-Auth-Request-User", "user"),
        ("X-Auth-Request-Email", "email"),
        ("X-Auth-Request-Preferred-Username", "preferred_username"),
        ("X-Auth-Request-Groups", "groups"),
        ("X-Forwarded-User", "user"),
        ("X-Forwarded-Email", "email"),
        ("X-Forwarded-Preferred-Username", "preferred_username"),
        ("X-Forwarded-Groups", "groups"),
    ]
    .into_iter()
    .map(|(name, claim)| IdentityHeaderFile {
        name: name.into(),
        claim: claim.into(),
    })
    .collect()
}

// === Scalars that also arrive as strings ===

/// A duration as written (`30s`); parsed during validation so the problem
/// names the key. A bare YAML integer is taken as text too (`0` is valid,
/// `30` gets "missing unit").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationText(pub String);

impl<'de> Deserialize<'de> for DurationText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as 30s, 5m, 12h or 7d")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationText, E> {
                Ok(DurationText(v.to_string()))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// A bool that may also be the string `true`/`false`: `${VAR}` expansion
/// always yields strings, and `secure: ${COOKIE_SECURE}` should work.
fn flex_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct BoolVisitor;
    impl Visitor<'_> for BoolVisitor {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(E::custom("expected true or false")),
            }
        }
    }
    deserializer.deserialize_any(BoolVisitor)
}

/// A count that may also be a decimal string (for `${VAR}`).
fn flex_usize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    struct CountVisitor;
    impl Visitor<'_> for CountVisitor {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a non-negative integer")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom("number is too large"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom("expected a non-negative integer"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom("expected a non-negative integer"))
        }
    }
    deserializer.deserialize_any(CountVisitor)
}
