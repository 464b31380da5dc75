//! The YAML file as written: serde DTOs that mirror the contract's keys one
//! to one, with its defaults. Nothing here is validated; `config::load` turns
//! these into the typed `model`. Every key has a default, so a missing key is
//! reported by validation under its full path rather than by serde.
//! Text that means "unset" is an empty string, as in the contract's example.
//! The keys' meanings are documented once, on the typed `model`; these
//! types are private to `config`.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

// === Top level ===

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) server: ServerFile,
    pub(super) provider: ProviderFile,
    pub(super) cookie: CookieFile,
    pub(super) session: SessionFile,
    pub(super) authorization: AuthorizationFile,
    pub(super) redirect: RedirectFile,
    pub(super) upstreams: Vec<UpstreamFile>,
    pub(super) headers: HeadersFile,
    pub(super) policies: Vec<PolicyFile>,
    pub(super) assertion: AssertionFile,
    pub(super) telemetry: TelemetryFile,
}

// === server ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ServerFile {
    pub(super) listen: String,
    pub(super) ext_authz_http: String,
    pub(super) ext_authz_grpc: String,
    pub(super) metrics: String,
    pub(super) ext_authz_path_prefix: String,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) tls: Option<TlsFile>,
    #[serde(deserialize_with = "flex_usize")]
    pub(super) threads: usize,
    pub(super) shutdown_grace: DurationText,
    pub(super) upgrade_sock: String,
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
            // `--upgrade`'s hand-over socket; empty = `<temp dir>/authgate_upgrade.sock`.
            upgrade_sock: String::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct TlsFile {
    pub(super) cert_file: String,
    pub(super) key_file: String,
}

// === provider ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ProviderFile {
    pub(super) issuer_url: String,
    pub(super) client_id: String,
    pub(super) client_secret: String,
    pub(super) client_secret_file: String,
    pub(super) scopes: Vec<String>,
    pub(super) redirect_url: String,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) discovery: bool,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: String,
    pub(super) userinfo_endpoint: String,
    pub(super) jwks_uri: String,
    pub(super) end_session_endpoint: String,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) pkce: bool,
    pub(super) audiences: Vec<String>,
    pub(super) extra_auth_params: std::collections::BTreeMap<String, String>,
    pub(super) claims: ClaimsFile,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) allow_unverified_email: bool,
    pub(super) ca_file: String,
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
            extra_auth_params: Default::default(),
            claims: ClaimsFile::default(),
            allow_unverified_email: false,
            ca_file: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct ClaimsFile {
    pub(super) user: String,
    pub(super) email: String,
    pub(super) groups: String,
    pub(super) preferred_username: String,
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
pub(super) struct CookieFile {
    pub(super) name: String,
    pub(super) secret: String,
    pub(super) secret_file: String,
    pub(super) previous_secrets: Vec<String>,
    pub(super) previous_secrets_file: String,
    pub(super) domains: Vec<String>,
    pub(super) path: String,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) secure: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) http_only: bool,
    pub(super) same_site: String,
    pub(super) expire: DurationText,
    pub(super) refresh: DurationText,
}

impl Default for CookieFile {
    fn default() -> Self {
        CookieFile {
            name: "_oauth2_proxy".into(),
            secret: String::new(),
            secret_file: String::new(),
            previous_secrets: Vec::new(),
            previous_secrets_file: String::new(),
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
pub(super) struct SessionFile {
    pub(super) store: String,
    pub(super) redis: RedisFile,
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
pub(super) struct RedisFile {
    pub(super) url: String,
    pub(super) sentinel_password: String,
    pub(super) sentinel_password_file: String,
}

impl Default for RedisFile {
    fn default() -> Self {
        RedisFile {
            url: "redis://127.0.0.1:6379/0".into(),
            sentinel_password: String::new(),
            sentinel_password_file: String::new(),
        }
    }
}

// === authorization ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AuthorizationFile {
    pub(super) email_domains: Vec<String>,
    pub(super) allowed_emails: Vec<String>,
    pub(super) allowed_groups: Vec<String>,
    pub(super) skip_auth_routes: Vec<String>,
    pub(super) api_routes: Vec<String>,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) skip_preflight: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) bearer_tokens: bool,
    pub(super) extra_jwt_issuers: Vec<ExtraIssuerFile>,
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
pub(super) struct ExtraIssuerFile {
    pub(super) issuer_url: String,
    pub(super) audience: String,
}

// === policies, assertion (issue 12) ===

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct PolicyFile {
    pub(super) name: String,
    pub(super) hosts: Vec<String>,
    pub(super) paths: Vec<String>,
    pub(super) methods: Vec<String>,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) skip_auth: bool,
    pub(super) allowed_groups: Vec<String>,
    pub(super) allowed_emails: Vec<String>,
    pub(super) email_domains: Vec<String>,
    pub(super) expression: String,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct AssertionFile {
    pub(super) header: String,
    pub(super) signing_key_file: String,
    pub(super) previous_public_keys_files: Vec<String>,
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) lifetime: DurationText,
}

impl Default for AssertionFile {
    fn default() -> Self {
        AssertionFile {
            header: String::new(),
            signing_key_file: String::new(),
            previous_public_keys_files: Vec::new(),
            issuer: String::new(),
            audience: String::new(),
            lifetime: DurationText("2m".into()),
        }
    }
}

// === telemetry ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct TelemetryFile {
    #[serde(deserialize_with = "flex_bool")]
    pub(super) access_log: bool,
    pub(super) otlp_endpoint: String,
    pub(super) service_name: String,
    #[serde(deserialize_with = "flex_f64")]
    pub(super) sample_ratio: f64,
}

impl Default for TelemetryFile {
    fn default() -> Self {
        TelemetryFile {
            access_log: false,
            otlp_endpoint: String::new(),
            service_name: "authgate".into(),
            sample_ratio: 1.0,
        }
    }
}

// === redirect, upstreams ===

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RedirectFile {
    pub(super) allowed_domains: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct UpstreamFile {
    pub(super) path: String,
    pub(super) url: String,
    pub(super) host: String,
}

// === headers ===

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct HeadersFile {
    #[serde(deserialize_with = "flex_bool")]
    pub(super) pass_authorization: bool,
    #[serde(deserialize_with = "flex_bool")]
    pub(super) pass_access_token: bool,
    pub(super) identity: Vec<IdentityHeaderFile>,
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
pub(super) struct IdentityHeaderFile {
    pub(super) name: String,
    pub(super) claim: String,
}

/// The contract's default identity headers: oauth2-proxy's
/// `X-Auth-Request-*` (for nginx/Envoy) and `X-Forwarded-*` (for upstreams).
pub(super) fn default_identity_headers() -> Vec<IdentityHeaderFile> {
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
pub(super) struct DurationText(pub(super) String);

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

/// A number that may also be a decimal string: the file reaches serde as
/// strings (for `${VAR}`), so `sample_ratio: 0.5` arrives as "0.5".
fn flex_f64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    struct NumberVisitor;
    impl Visitor<'_> for NumberVisitor {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number")
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim().parse().map_err(|_| E::custom("expected a number"))
        }
    }
    deserializer.deserialize_any(NumberVisitor)
}
