//! The oauth2-proxy (v7) option catalogue: every flag it registers, its
//! config-file key, its `OAUTH2_PROXY_*` variable and its kind, taken from
//! oauth2-proxy's own flag sets (`pkg/apis/options`), so an option this table
//! lacks is one oauth2-proxy itself would refuse.

/// How oauth2-proxy parses an option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// `true`/`false` (Go's `strconv.ParseBool`); a bare flag means true.
    Bool,
    /// A string slice: repeated flags, or comma-separated text.
    List,
    /// A Go duration (`12h`, `1h30m`, `90s`).
    Duration,
    /// A decimal integer.
    Int,
}

/// Which oauth2-proxy flag set registers the option. With `--alpha-config`
/// only `Core` options are accepted: the rest moved into the alpha config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Accepted in both modes.
    Core,
    /// Provider settings (alpha: `providers`).
    Provider,
    /// Header settings (alpha: `injectRequestHeaders`/`injectResponseHeaders`).
    Headers,
    /// Upstream settings (alpha: `upstreamConfig`).
    Upstreams,
    /// Listener settings (alpha: `server`, `metricsServer`).
    Server,
}

/// One oauth2-proxy option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionSpec {
    /// The flag name without dashes (`cookie-secret`); the option's name in reports.
    pub flag: &'static str,
    /// The config-file (TOML) key (`cookie_secret`).
    pub cfg: &'static str,
    /// How its value is parsed.
    pub kind: Kind,
    /// Which flag set registers it.
    pub group: Group,
}

impl OptionSpec {
    /// The environment variable oauth2-proxy reads it from (`OAUTH2_PROXY_COOKIE_SECRET`).
    pub fn env(&self) -> String {
        format!("OAUTH2_PROXY_{}", self.cfg.to_ascii_uppercase())
    }
}

const fn opt(flag: &'static str, cfg: &'static str, kind: Kind, group: Group) -> OptionSpec {
    OptionSpec {
        flag,
        cfg,
        kind,
        group,
    }
}

/// The option registered under flag name `flag`.
pub fn by_flag(flag: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.flag == flag)
}

/// The option whose config-file key is `cfg`.
pub fn by_cfg(cfg: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.cfg == cfg)
}

/// The option read from environment variable `name`.
pub fn by_env(name: &str) -> Option<&'static OptionSpec> {
    let cfg = name.strip_prefix("OAUTH2_PROXY_")?.to_ascii_lowercase();
    by_cfg(&cfg)
}

/// Every option oauth2-proxy v7 registers (besides `--config`,
/// `--alpha-config`, `--version`, `--convert-config-to-alpha`, `--config-test`).
pub static OPTIONS: &[OptionSpec] = &[
    opt("acr-values", "acr_values", Kind::Text, Group::Provider),
    opt(
        "allow-query-semicolons",
        "allow_query_semicolons",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "allowed-group",
        "allowed_groups",
        Kind::List,
        Group::Provider,
    ),
    opt("allowed-role", "allowed_roles", Kind::List, Group::Provider),
    opt("api-route", "api_routes", Kind::List, Group::Core),
    opt(
        "approval-prompt",
        "approval_prompt",
        Kind::Text,
        Group::Provider,
    ),
    opt("auth-logging", "auth_logging", Kind::Bool, Group::Core),
    opt(
        "auth-logging-format",
        "auth_logging_format",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "auth-request-response-mode",
        "auth_request_response_mode",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "authenticated-emails-file",
        "authenticated_emails_file",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "azure-graph-group-field",
        "azure_graph_group_field",
        Kind::Text,
        Group::Provider,
    ),
    opt("azure-tenant", "azure_tenant", Kind::Text, Group::Provider),
    opt(
        "backend-logout-url",
        "backend_logout_url",
        Kind::Text,
        Group::Provider,
    ),
    opt("banner", "banner", Kind::Text, Group::Core),
    opt(
        "basic-auth-password",
        "basic_auth_password",
        Kind::Text,
        Group::Headers,
    ),
    opt(
        "bearer-token-login-fallback",
        "bearer_token_login_fallback",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "bitbucket-repository",
        "bitbucket_repository",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "bitbucket-team",
        "bitbucket_team",
        Kind::Text,
        Group::Provider,
    ),
    opt("client-id", "client_id", Kind::Text, Group::Provider),
    opt(
        "client-secret",
        "client_secret",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "client-secret-file",
        "client_secret_file",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "code-challenge-method",
        "code_challenge_method",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "cookie-csrf-expire",
        "cookie_csrf_expire",
        Kind::Duration,
        Group::Core,
    ),
    opt(
        "cookie-csrf-per-request",
        "cookie_csrf_per_request",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "cookie-csrf-per-request-limit",
        "cookie_csrf_per_request_limit",
        Kind::Int,
        Group::Core,
    ),
    opt(
        "cookie-csrf-samesite",
        "cookie_csrf_samesite",
        Kind::Text,
        Group::Core,
    ),
    opt("cookie-domain", "cookie_domains", Kind::List, Group::Core),
    opt(
        "cookie-expire",
        "cookie_expire",
        Kind::Duration,
        Group::Core,
    ),
    opt(
        "cookie-httponly",
        "cookie_httponly",
        Kind::Bool,
        Group::Core,
    ),
    opt("cookie-name", "cookie_name", Kind::Text, Group::Core),
    opt("cookie-path", "cookie_path", Kind::Text, Group::Core),
    opt(
        "cookie-refresh",
        "cookie_refresh",
        Kind::Duration,
        Group::Core,
    ),
    opt(
        "cookie-samesite",
        "cookie_samesite",
        Kind::Text,
        Group::Core,
    ),
    opt("cookie-secret", "cookie_secret", Kind::Text, Group::Core),
    opt(
        "cookie-secret-file",
        "cookie_secret_file",
        Kind::Text,
        Group::Core,
    ),
    opt("cookie-secure", "cookie_secure", Kind::Bool, Group::Core),
    opt(
        "custom-sign-in-logo",
        "custom_sign_in_logo",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "custom-templates-dir",
        "custom_templates_dir",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "disable-keep-alives",
        "disable_keep_alives",
        Kind::Bool,
        Group::Upstreams,
    ),
    opt(
        "display-htpasswd-form",
        "display_htpasswd_form",
        Kind::Bool,
        Group::Core,
    ),
    opt("email-domain", "email_domains", Kind::List, Group::Core),
    opt("encode-state", "encode_state", Kind::Bool, Group::Core),
    opt(
        "entra-id-allowed-tenant",
        "entra_id_allowed_tenants",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "entra-id-federated-token-auth",
        "entra_id_federated_token_auth",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "errors-to-info-log",
        "errors_to_info_log",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "exclude-logging-path",
        "exclude_logging_paths",
        Kind::List,
        Group::Core,
    ),
    opt(
        "extra-jwt-issuers",
        "extra_jwt_issuers",
        Kind::List,
        Group::Core,
    ),
    opt(
        "flush-interval",
        "flush_interval",
        Kind::Duration,
        Group::Upstreams,
    ),
    opt("footer", "footer", Kind::Text, Group::Core),
    opt(
        "force-code-challenge-method",
        "force_code_challenge_method",
        Kind::Text,
        Group::Provider,
    ),
    opt("force-https", "force_https", Kind::Bool, Group::Core),
    opt(
        "force-json-errors",
        "force_json_errors",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "gcp-healthchecks",
        "gcp_healthchecks",
        Kind::Bool,
        Group::Core,
    ),
    opt("github-org", "github_org", Kind::Text, Group::Provider),
    opt("github-repo", "github_repo", Kind::Text, Group::Provider),
    opt("github-team", "github_team", Kind::Text, Group::Provider),
    opt("github-token", "github_token", Kind::Text, Group::Provider),
    opt("github-user", "github_users", Kind::List, Group::Provider),
    opt("gitlab-group", "gitlab_groups", Kind::List, Group::Provider),
    opt(
        "gitlab-project",
        "gitlab_projects",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "google-admin-api-user-scope",
        "google_admin_api_user_scope",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "google-admin-email",
        "google_admin_email",
        Kind::Text,
        Group::Provider,
    ),
    opt("google-group", "google_groups", Kind::List, Group::Provider),
    opt(
        "google-service-account-json",
        "google_service_account_json",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "google-target-principal",
        "google_target_principal",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "google-use-application-default-credentials",
        "google_use_application_default_credentials",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "google-use-organization-id",
        "google_use_organization_id",
        Kind::Text,
        Group::Provider,
    ),
    opt("htpasswd-file", "htpasswd_file", Kind::Text, Group::Core),
    opt(
        "htpasswd-user-group",
        "htpasswd_user_groups",
        Kind::List,
        Group::Core,
    ),
    opt("http-address", "http_address", Kind::Text, Group::Server),
    opt("https-address", "https_address", Kind::Text, Group::Server),
    opt(
        "insecure-oidc-allow-unverified-email",
        "insecure_oidc_allow_unverified_email",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "insecure-oidc-skip-issuer-verification",
        "insecure_oidc_skip_issuer_verification",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "insecure-oidc-skip-nonce",
        "insecure_oidc_skip_nonce",
        Kind::Bool,
        Group::Provider,
    ),
    opt("jwt-key", "jwt_key", Kind::Text, Group::Provider),
    opt("jwt-key-file", "jwt_key_file", Kind::Text, Group::Provider),
    opt(
        "keycloak-group",
        "keycloak_groups",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "logging-compress",
        "logging_compress",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "logging-filename",
        "logging_filename",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "logging-local-time",
        "logging_local_time",
        Kind::Bool,
        Group::Core,
    ),
    opt("logging-max-age", "logging_max_age", Kind::Int, Group::Core),
    opt(
        "logging-max-backups",
        "logging_max_backups",
        Kind::Int,
        Group::Core,
    ),
    opt(
        "logging-max-size",
        "logging_max_size",
        Kind::Int,
        Group::Core,
    ),
    opt("login-url", "login_url", Kind::Text, Group::Provider),
    opt(
        "metrics-address",
        "metrics_address",
        Kind::Text,
        Group::Server,
    ),
    opt(
        "metrics-secure-address",
        "metrics_secure_address",
        Kind::Text,
        Group::Server,
    ),
    opt(
        "metrics-tls-cert-file",
        "metrics_tls_cert_file",
        Kind::Text,
        Group::Server,
    ),
    opt(
        "metrics-tls-key-file",
        "metrics_tls_key_file",
        Kind::Text,
        Group::Server,
    ),
    opt(
        "oidc-audience-claim",
        "oidc_audience_claims",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "oidc-email-claim",
        "oidc_email_claim",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "oidc-enabled-signing-alg",
        "oidc_enabled_signing_algs",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "oidc-extra-audience",
        "oidc_extra_audiences",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "oidc-groups-claim",
        "oidc_groups_claim",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "oidc-issuer-url",
        "oidc_issuer_url",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "oidc-jwks-url",
        "oidc_jwks_url",
        Kind::Text,
        Group::Provider,
    ),
    opt(
        "oidc-public-key-file",
        "oidc_public_key_files",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "pass-access-token",
        "pass_access_token",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "pass-authorization-header",
        "pass_authorization_header",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "pass-basic-auth",
        "pass_basic_auth",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "pass-host-header",
        "pass_host_header",
        Kind::Bool,
        Group::Upstreams,
    ),
    opt(
        "pass-user-headers",
        "pass_user_headers",
        Kind::Bool,
        Group::Headers,
    ),
    opt("ping-path", "ping_path", Kind::Text, Group::Core),
    opt(
        "ping-user-agent",
        "ping_user_agent",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "prefer-email-to-user",
        "prefer_email_to_user",
        Kind::Bool,
        Group::Headers,
    ),
    opt("profile-url", "profile_url", Kind::Text, Group::Provider),
    opt("prompt", "prompt", Kind::Text, Group::Provider),
    opt("provider", "provider", Kind::Text, Group::Provider),
    opt(
        "provider-ca-file",
        "provider_ca_files",
        Kind::List,
        Group::Provider,
    ),
    opt(
        "provider-display-name",
        "provider_display_name",
        Kind::Text,
        Group::Provider,
    ),
    opt("proxy-prefix", "proxy_prefix", Kind::Text, Group::Core),
    opt(
        "proxy-websockets",
        "proxy_websockets",
        Kind::Bool,
        Group::Upstreams,
    ),
    opt("pubjwk-url", "pubjwk_url", Kind::Text, Group::Provider),
    opt("ready-path", "ready_path", Kind::Text, Group::Core),
    opt(
        "real-client-ip-header",
        "real_client_ip_header",
        Kind::Text,
        Group::Core,
    ),
    opt("redeem-url", "redeem_url", Kind::Text, Group::Provider),
    opt("redirect-url", "redirect_url", Kind::Text, Group::Core),
    opt("redis-ca-path", "redis_ca_path", Kind::Text, Group::Core),
    opt(
        "redis-cluster-connection-urls",
        "redis_cluster_connection_urls",
        Kind::List,
        Group::Core,
    ),
    opt(
        "redis-connection-idle-timeout",
        "redis_connection_idle_timeout",
        Kind::Int,
        Group::Core,
    ),
    opt(
        "redis-connection-url",
        "redis_connection_url",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "redis-insecure-skip-tls-verify",
        "redis_insecure_skip_tls_verify",
        Kind::Bool,
        Group::Core,
    ),
    opt("redis-password", "redis_password", Kind::Text, Group::Core),
    opt(
        "redis-sentinel-connection-urls",
        "redis_sentinel_connection_urls",
        Kind::List,
        Group::Core,
    ),
    opt(
        "redis-sentinel-master-name",
        "redis_sentinel_master_name",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "redis-sentinel-password",
        "redis_sentinel_password",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "redis-use-cluster",
        "redis_use_cluster",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "redis-use-sentinel",
        "redis_use_sentinel",
        Kind::Bool,
        Group::Core,
    ),
    opt("redis-username", "redis_username", Kind::Text, Group::Core),
    opt(
        "relative-redirect-url",
        "relative_redirect_url",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "request-id-header",
        "request_id_header",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "request-logging",
        "request_logging",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "request-logging-format",
        "request_logging_format",
        Kind::Text,
        Group::Core,
    ),
    opt("resource", "resource", Kind::Text, Group::Provider),
    opt("reverse-proxy", "reverse_proxy", Kind::Bool, Group::Core),
    opt("scope", "scope", Kind::Text, Group::Provider),
    opt(
        "session-cookie-minimal",
        "session_cookie_minimal",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "session-store-type",
        "session_store_type",
        Kind::Text,
        Group::Core,
    ),
    opt(
        "set-authorization-header",
        "set_authorization_header",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "set-basic-auth",
        "set_basic_auth",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "set-xauthrequest",
        "set_xauthrequest",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "show-debug-on-error",
        "show_debug_on_error",
        Kind::Bool,
        Group::Core,
    ),
    opt("signature-key", "signature_key", Kind::Text, Group::Core),
    opt(
        "silence-ping-logging",
        "silence_ping_logging",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "skip-auth-preflight",
        "skip_auth_preflight",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "skip-auth-regex",
        "skip_auth_regex",
        Kind::List,
        Group::Core,
    ),
    opt(
        "skip-auth-route",
        "skip_auth_routes",
        Kind::List,
        Group::Core,
    ),
    opt(
        "skip-auth-strip-headers",
        "skip_auth_strip_headers",
        Kind::Bool,
        Group::Headers,
    ),
    opt(
        "skip-claims-from-profile-url",
        "skip_claims_from_profile_url",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "skip-jwt-bearer-tokens",
        "skip_jwt_bearer_tokens",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "skip-oidc-discovery",
        "skip_oidc_discovery",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "skip-provider-button",
        "skip_provider_button",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "ssl-insecure-skip-verify",
        "ssl_insecure_skip_verify",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "ssl-upstream-insecure-skip-verify",
        "ssl_upstream_insecure_skip_verify",
        Kind::Bool,
        Group::Upstreams,
    ),
    opt(
        "standard-logging",
        "standard_logging",
        Kind::Bool,
        Group::Core,
    ),
    opt(
        "standard-logging-format",
        "standard_logging_format",
        Kind::Text,
        Group::Core,
    ),
    opt("tls-cert-file", "tls_cert_file", Kind::Text, Group::Server),
    opt(
        "tls-cipher-suite",
        "tls_cipher_suites",
        Kind::List,
        Group::Server,
    ),
    opt("tls-key-file", "tls_key_file", Kind::Text, Group::Server),
    opt(
        "tls-min-version",
        "tls_min_version",
        Kind::Text,
        Group::Server,
    ),
    opt("trusted-ip", "trusted_ips", Kind::List, Group::Core),
    opt(
        "trusted-proxy-ip",
        "trusted_proxy_ips",
        Kind::List,
        Group::Core,
    ),
    opt("upstream", "upstreams", Kind::List, Group::Upstreams),
    opt(
        "upstream-timeout",
        "upstream_timeout",
        Kind::Duration,
        Group::Upstreams,
    ),
    opt(
        "use-system-trust-store",
        "use_system_trust_store",
        Kind::Bool,
        Group::Provider,
    ),
    opt(
        "user-id-claim",
        "user_id_claim",
        Kind::Text,
        Group::Provider,
    ),
    opt("validate-url", "validate_url", Kind::Text, Group::Provider),
    opt(
        "whitelist-domain",
        "whitelist_domains",
        Kind::List,
        Group::Core,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_between_flag_file_and_environment() {
        let o = by_flag("email-domain").unwrap();
        assert_eq!(o.cfg, "email_domains");
        assert_eq!(o.env(), "OAUTH2_PROXY_EMAIL_DOMAINS");
        assert_eq!(
            by_env("OAUTH2_PROXY_COOKIE_DOMAINS").unwrap().flag,
            "cookie-domain"
        );
        assert_eq!(by_cfg("upstreams").unwrap().group, Group::Upstreams);
        assert!(by_flag("no-such-option").is_none());
    }

    #[test]
    fn flags_and_keys_are_unique() {
        for (i, a) in OPTIONS.iter().enumerate() {
            for b in &OPTIONS[i + 1..] {
                assert_ne!(a.flag, b.flag);
                assert_ne!(a.cfg, b.cfg);
            }
        }
    }
}
