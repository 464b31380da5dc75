//! The oauth2-proxy option model into an authgate config: one key per
//! option where authgate has one, oauth2-proxy's defaults written out where
//! authgate's differ, secrets as `${VAR}`/`_file` references unless they
//! were given in clear, and a report line for everything else. Access
//! restrictions it cannot express make the run fail ([`Report::restriction`]).
//! `verify::finish` then checks the text with authgate's own loader.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value as Yaml};

use super::alpha::AlphaParts;
use super::options::{authgate_duration, go_duration, Options, Refused, Setting};
use super::{MigrateError, Report};

/// Options that restrict who gets in and that authgate cannot express:
/// dropping one would let more users in.
const RESTRICTIONS: &[&str] = &[
    "github-org",
    "github-team",
    "github-repo",
    "github-user",
    "gitlab-group",
    "gitlab-project",
    "google-group",
    "azure-tenant",
    "entra-id-allowed-tenant",
    "bitbucket-team",
    "bitbucket-repository",
];

/// The ext_authz HTTP listener's port when the proxy listener's is unknown.
const EXT_AUTHZ_PORT_OFFSET: u16 = 1;

struct Writer<'a> {
    o: &'a Options,
    seen: BTreeSet<String>,
    r: &'a mut Report,
}

impl Writer<'_> {
    fn get(&mut self, flag: &str) -> Option<&Setting> {
        self.seen.insert(flag.to_string());
        self.o.get(flag)
    }
    fn text(&mut self, flag: &str) -> Option<String> {
        self.seen.insert(flag.to_string());
        self.o.text(flag).map(String::from)
    }
    fn flag(&mut self, flag: &str) -> Option<bool> {
        self.seen.insert(flag.to_string());
        self.o.flag(flag)
    }
    fn list(&mut self, flag: &str) -> Option<Vec<String>> {
        self.seen.insert(flag.to_string());
        self.o.list(flag).map(<[String]>::to_vec)
    }
    /// How the report names an option: `--flag`, or where the alpha config set it.
    fn name(&self, flag: &str) -> String {
        match self.o.get(flag) {
            Some(s) if s.origin.starts_with("alphaConfig") || s.origin.starts_with("helm ") => {
                s.origin.clone()
            }
            _ => format!("--{flag}"),
        }
    }
    /// A secret: `${VAR}` when it comes from the environment, else in clear
    /// with a warning.
    fn secret(&mut self, flag: &str, key: &str) -> Option<String> {
        let setting = self.get(flag)?.clone();
        if let Some(var) = &setting.env_ref {
            return Some(format!("${{{var}}}"));
        }
        let name = self.name(flag);
        self.r.warn(
            &name,
            &format!("given in clear, so carried in clear as {key}; move it to a Secret and use ${{VAR}} or {key}_file"),
        );
        match setting.value {
            super::options::Value::Text(t) => Some(t),
            _ => None,
        }
    }
    /// Marks options read only to say they are not carried.
    fn not_carried(&mut self, flag: &str, why: &str) {
        if self.get(flag).is_some() {
            let name = self.name(flag);
            self.r.not_carried(&name, why);
        }
    }
}

fn put(map: &mut Mapping, key: &str, value: impl Into<Yaml>) {
    map.insert(Yaml::from(key), value.into());
}

fn seq(items: Vec<String>) -> Yaml {
    Yaml::Sequence(items.into_iter().map(Yaml::from).collect())
}

/// `0.0.0.0:4180` from oauth2-proxy's `:4180`, `http://0.0.0.0:4180`.
fn listen_addr(text: &str) -> String {
    let text = text.trim();
    let text = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or(text);
    if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    }
}

/// Builds the authgate config.
///
/// # Errors
/// [`MigrateError::Refused`] when oauth2-proxy would refuse the options
/// (no e-mail rule, a malformed `--extra-jwt-issuers`).
pub fn write(
    o: &Options,
    alpha: Option<&AlphaParts>,
    emails: Option<Vec<String>>,
    r: &mut Report,
) -> Result<Mapping, MigrateError> {
    let mut w = Writer {
        o,
        seen: BTreeSet::new(),
        r,
    };
    let mut root = Mapping::new();

    // === server ===
    let mut server = Mapping::new();
    let listen = listen_addr(
        &w.text("http-address")
            .unwrap_or_else(|| "127.0.0.1:4180".into()),
    );
    put(&mut server, "listen", listen.clone());
    if let Some(m) = w.text("metrics-address").filter(|m| !m.is_empty()) {
        put(&mut server, "metrics", listen_addr(&m));
    }
    let (upstreams, ext_authz_only) = upstreams(&mut w, alpha);
    if ext_authz_only {
        let ext = match listen.parse::<std::net::SocketAddr>() {
            Ok(mut a) => {
                a.set_port(a.port().saturating_add(EXT_AUTHZ_PORT_OFFSET));
                a.to_string()
            }
            Err(_) => "0.0.0.0:4181".into(),
        };
        w.r.carried(
            "upstream static://200",
            &format!(
                "server.ext_authz_http: {ext} (ext_authz only, no upstream): point Istio's envoyExtAuthzHttp port at it; {listen} keeps /oauth2/*, /ping and /ready"
            ),
        );
        put(&mut server, "ext_authz_http", ext);
    }
    if w.flag("reverse-proxy") == Some(true) {
        let cidrs = w.list("trusted-proxy-ip").unwrap_or_default();
        if cidrs.is_empty() {
            let private = [
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "127.0.0.0/8",
                "::1/128",
                "fc00::/7",
            ];
            w.r.warn(
                "--reverse-proxy",
                "carried as server.trusted_proxies with the private ranges; fill in the CIDRs of your ingress/mesh proxies (oauth2-proxy trusted X-Forwarded-* from anyone)",
            );
            put(
                &mut server,
                "trusted_proxies",
                seq(private.map(String::from).to_vec()),
            );
        } else {
            put(&mut server, "trusted_proxies", seq(cidrs));
        }
    } else {
        w.not_carried(
            "trusted-proxy-ip",
            "used by oauth2-proxy only with --reverse-proxy",
        );
    }
    let cert = w.text("tls-cert-file");
    let key = w.text("tls-key-file");
    if let (Some(cert), Some(key)) = (cert, key) {
        let mut tls = Mapping::new();
        put(&mut tls, "cert_file", cert);
        put(&mut tls, "key_file", key);
        put(&mut server, "tls", Yaml::Mapping(tls));
        w.r.carried(
            "--tls-cert-file",
            "server.tls: authgate serves TLS on server.listen, not on a second https-address",
        );
    }
    w.get("https-address");
    put(&mut root, "server", Yaml::Mapping(server));

    // === provider ===
    let provider = provider(&mut w, alpha);
    let (policy, groups) = roles_policy(&mut w);
    put(&mut root, "provider", Yaml::Mapping(provider));

    // === cookie ===
    put(&mut root, "cookie", Yaml::Mapping(cookie(&mut w)));

    // === session ===
    put(&mut root, "session", Yaml::Mapping(session(&mut w)));

    // === authorization ===
    let mut authz = Mapping::new();
    let domains = w.list("email-domain");
    if domains.is_none() && emails.is_none() {
        return Err(MigrateError::Refused(Refused(
            "missing setting for email validation: email-domain or authenticated-emails-file required. use email-domain=* to authorize all email addresses".into(),
        )));
    }
    put(
        &mut authz,
        "email_domains",
        seq(domains.unwrap_or_default()),
    );
    if let Some(emails) = emails {
        w.get("authenticated-emails-file");
        let list: Vec<String> = emails
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        put(&mut authz, "allowed_emails", seq(list));
    }
    put(&mut authz, "allowed_groups", seq(groups));
    let mut skip = w.list("skip-auth-regex").unwrap_or_default();
    skip.extend(w.list("skip-auth-route").unwrap_or_default());
    if !skip.is_empty() {
        put(&mut authz, "skip_auth_routes", seq(skip));
    }
    if let Some(api) = w.list("api-route") {
        put(&mut authz, "api_routes", seq(api));
    }
    put(
        &mut authz,
        "skip_preflight",
        w.flag("skip-auth-preflight").unwrap_or(false),
    );
    put(
        &mut authz,
        "bearer_tokens",
        w.flag("skip-jwt-bearer-tokens").unwrap_or(false),
    );
    if let Some(issuers) = w.list("extra-jwt-issuers") {
        let mut list = Vec::new();
        for spec in issuers {
            let Some((issuer, audience)) = spec.split_once('=') else {
                return Err(MigrateError::Refused(Refused(format!(
                    "invalid jwt verifier uri=audience spec: {spec}"
                ))));
            };
            let mut m = Mapping::new();
            put(&mut m, "issuer_url", issuer);
            put(&mut m, "audience", audience);
            list.push(Yaml::Mapping(m));
        }
        put(&mut authz, "extra_jwt_issuers", Yaml::Sequence(list));
    }
    w.not_carried(
        "trusted-ip",
        "authgate lets no client address skip authentication",
    );
    w.not_carried(
        "htpasswd-file",
        "authgate has no basic-auth users; they sign in through the IdP",
    );
    w.not_carried("htpasswd-user-group", "authgate has no basic-auth users");
    put(&mut root, "authorization", Yaml::Mapping(authz));

    // === redirect ===
    if let Some(domains) = w.list("whitelist-domain") {
        let mut redirect = Mapping::new();
        put(&mut redirect, "allowed_domains", seq(domains));
        put(&mut root, "redirect", Yaml::Mapping(redirect));
    }

    // === upstreams, headers ===
    put(&mut root, "upstreams", Yaml::Sequence(upstreams));
    put(&mut root, "headers", Yaml::Mapping(headers(&mut w, alpha)));

    if let Some(policy) = policy {
        put(
            &mut root,
            "policies",
            Yaml::Sequence(vec![Yaml::Mapping(policy)]),
        );
    }

    // === telemetry ===
    let request_logging = w.flag("request-logging").unwrap_or(true);
    let mut telemetry = Mapping::new();
    put(&mut telemetry, "access_log", request_logging);
    put(&mut root, "telemetry", Yaml::Mapping(telemetry));
    w.get("silence-ping-logging");
    for flag in [
        "auth-logging",
        "standard-logging",
        "auth-logging-format",
        "request-logging-format",
        "standard-logging-format",
        "logging-filename",
        "logging-max-size",
        "logging-max-age",
        "logging-max-backups",
        "logging-local-time",
        "logging-compress",
        "exclude-logging-path",
        "errors-to-info-log",
        "request-id-header",
    ] {
        w.not_carried(flag, "authgate logs to stderr (RUST_LOG filters, --log-format json); telemetry.access_log is the request log");
    }
    if w.flag("skip-provider-button") == Some(false) {
        w.r.carried(
            "--skip-provider-button=false",
            "authgate has no sign-in button page: it goes straight to the IdP",
        );
    }
    if let Some(prefix) = w.text("proxy-prefix").filter(|p| p != "/oauth2") {
        w.r.not_carried("--proxy-prefix", &format!("authgate's endpoints are always under /oauth2 (not {prefix}); update the IdP's redirect URIs"));
    }
    w.not_carried(
        "ssl-insecure-skip-verify",
        "authgate never skips TLS verification",
    );
    w.not_carried(
        "ssl-upstream-insecure-skip-verify",
        "authgate never skips TLS verification",
    );
    w.not_carried(
        "redis-insecure-skip-tls-verify",
        "authgate never skips TLS verification",
    );

    // Every other option that was set: a restriction fails the run, the rest is reported.
    let rest: Vec<(&'static str, String)> = o
        .iter()
        .filter(|(flag, _)| !w.seen.contains(*flag))
        .map(|(flag, _)| (flag, w.name(flag)))
        .collect();
    for (flag, name) in rest {
        if RESTRICTIONS.contains(&flag) {
            w.r.restriction(
                &name,
                "authgate has no equivalent of this provider-specific restriction",
            );
        } else {
            w.r.not_carried(&name, "authgate has no equivalent");
        }
    }
    Ok(root)
}

fn provider(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> Mapping {
    let mut p = Mapping::new();
    let kind = w.text("provider").unwrap_or_else(|| "google".into());
    let mut issuer = w.text("oidc-issuer-url");
    match kind.as_str() {
        "oidc" | "keycloak-oidc" => {}
        "google" => {
            if issuer.is_none() {
                issuer = Some("https://accounts.google.com".into());
            }
            w.r.carried(
                "--provider=google",
                "provider.issuer_url https://accounts.google.com (Google's OpenID Connect)",
            );
        }
        other => {
            let name = w.name("provider");
            w.r.refuse(&format!("{name}={other}"), "cannot be carried: authgate speaks OpenID Connect only (oidc, keycloak-oidc, google)");
        }
    }
    put(&mut p, "issuer_url", issuer.unwrap_or_default());
    if let Some(id) = w.get("client-id").cloned() {
        let id = match (&id.env_ref, id.value) {
            (Some(var), _) => format!("${{{var}}}"),
            (None, super::options::Value::Text(t)) => t,
            _ => String::new(),
        };
        put(&mut p, "client_id", id);
    }
    if let Some(file) = w.text("client-secret-file") {
        put(&mut p, "client_secret_file", file);
        w.get("client-secret");
    } else if let Some(secret) = w.secret("client-secret", "provider.client_secret") {
        put(&mut p, "client_secret", secret);
    }
    let scope = w
        .text("scope")
        .unwrap_or_else(|| "openid email profile".into());
    let mut scopes: Vec<String> = scope.split_whitespace().map(String::from).collect();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
        let name = w.name("scope");
        w.r.carried(
            &name,
            "provider.scopes with openid added (authgate is an OpenID Connect client)",
        );
    }
    put(&mut p, "scopes", seq(scopes));
    if let Some(url) = w.text("redirect-url") {
        put(&mut p, "redirect_url", url);
    }
    let skip_discovery = w.flag("skip-oidc-discovery").unwrap_or(false);
    let login = w.text("login-url");
    let redeem = w.text("redeem-url");
    let profile = w.text("profile-url");
    let validate = w.text("validate-url");
    let jwks = w.text("oidc-jwks-url");
    put(&mut p, "discovery", !skip_discovery);
    if skip_discovery {
        put(&mut p, "authorization_endpoint", login.unwrap_or_default());
        put(&mut p, "token_endpoint", redeem.unwrap_or_default());
        let userinfo = match (profile, validate) {
            (Some(p), _) => p,
            (None, Some(v)) => {
                let name = w.name("validate-url");
                w.r.carried(
                    &name,
                    "provider.userinfo_endpoint (no profile URL was given)",
                );
                v
            }
            (None, None) => String::new(),
        };
        put(&mut p, "userinfo_endpoint", userinfo);
        put(&mut p, "jwks_uri", jwks.unwrap_or_default());
    } else {
        for (flag, set) in [
            ("login-url", login),
            ("redeem-url", redeem),
            ("profile-url", profile),
            ("oidc-jwks-url", jwks),
        ] {
            if set.is_some() {
                let name = w.name(flag);
                w.r.not_carried(
                    &name,
                    "discovery is on: authgate uses the discovered endpoint",
                );
            }
        }
    }
    if w.o.get("validate-url").is_some() && !(skip_discovery && w.o.get("profile-url").is_none()) {
        let name = w.name("validate-url");
        w.r.not_carried(&name, "authgate checks sessions by the ID token's signature and expiry, not by calling a validate URL");
    }
    let method = w
        .text("code-challenge-method")
        .or_else(|| w.text("force-code-challenge-method"));
    match method.as_deref() {
        Some("S256") => {}
        Some(other) => w.r.carried(&format!("--code-challenge-method={other}"), "provider.pkce: true (authgate's PKCE is always S256)"),
        None => w.r.carried("--code-challenge-method", "provider.pkce: true (unset in oauth2-proxy: no PKCE; authgate uses S256; set false if the IdP refuses it)"),
    }
    put(&mut p, "pkce", true);
    if let Some(aud) = w.list("oidc-extra-audience") {
        put(&mut p, "audiences", seq(aud));
    }
    if let Some(claims) = w.list("oidc-audience-claim").filter(|c| c != &["aud"]) {
        let name = w.name("oidc-audience-claim");
        w.r.not_carried(
            &name,
            &format!(
                "authgate checks the standard aud claim only, not {}",
                claims.join(",")
            ),
        );
    }

    let mut params = Mapping::new();
    let prompt = w.text("prompt");
    let approval = w.text("approval-prompt");
    match (prompt, approval) {
        (Some(prompt), approval) => {
            put(&mut params, "prompt", prompt);
            if approval.is_some() {
                w.r.not_carried(
                    "--approval-prompt",
                    "oauth2-proxy ignores it when --prompt is set",
                );
            }
        }
        (None, Some(a)) if a == "force" => {
            put(&mut params, "prompt", "consent");
            w.r.carried(
                "--approval-prompt=force",
                "provider.extra_auth_params.prompt: consent (its OpenID Connect spelling)",
            );
        }
        (None, Some(a)) => w.r.not_carried(
            &format!("--approval-prompt={a}"),
            "only force has an OpenID Connect equivalent (prompt=consent)",
        ),
        (None, None) => {}
    }
    if let Some(acr) = w.text("acr-values") {
        put(&mut params, "acr_values", acr);
    }
    for (name, defaults, allowed) in alpha.map(|a| a.login_params.as_slice()).unwrap_or_default() {
        if let Some(first) = defaults.first() {
            put(&mut params, name, first.clone());
            if defaults.len() > 1 {
                w.r.carried(
                    &format!("alphaConfig loginURLParameters {name}"),
                    &format!("provider.extra_auth_params.{name}: {first} (the first default only)"),
                );
            }
        }
        if *allowed {
            w.r.not_carried(
                &format!("alphaConfig loginURLParameters {name}.allowed"),
                "authgate takes no authorization parameters from the browser",
            );
        }
    }
    if !params.is_empty() {
        put(&mut p, "extra_auth_params", Yaml::Mapping(params));
    }

    let mut claims = Mapping::new();
    put(
        &mut claims,
        "user",
        w.text("user-id-claim").unwrap_or_else(|| "email".into()),
    );
    put(
        &mut claims,
        "email",
        w.text("oidc-email-claim").unwrap_or_else(|| "email".into()),
    );
    put(
        &mut claims,
        "groups",
        w.text("oidc-groups-claim")
            .unwrap_or_else(|| "groups".into()),
    );
    put(&mut claims, "preferred_username", "preferred_username");
    put(&mut p, "claims", Yaml::Mapping(claims));
    put(
        &mut p,
        "allow_unverified_email",
        w.flag("insecure-oidc-allow-unverified-email")
            .unwrap_or(false),
    );
    if let Some(cas) = w.list("provider-ca-file") {
        if let Some(first) = cas.first() {
            put(&mut p, "ca_file", first.clone());
        }
        if cas.len() > 1 {
            w.r.carried(
                "--provider-ca-file",
                "provider.ca_file: the first file only; concatenate the bundles into one PEM file",
            );
        }
    }
    w.not_carried(
        "insecure-oidc-skip-issuer-verification",
        "authgate always verifies the issuer",
    );
    w.not_carried(
        "insecure-oidc-skip-nonce",
        "authgate always checks the nonce",
    );
    w.not_carried(
        "backend-logout-url",
        "set provider.end_session_endpoint for RP-initiated logout",
    );
    w.not_carried("provider-display-name", "authgate has no sign-in page");
    p
}

/// `--allowed-group`, `--allowed-role` and `--keycloak-group`: oauth2-proxy
/// admits a user holding any of them. Groups alone become
/// `authorization.allowed_groups`; with roles, one CEL policy expresses the
/// union (Keycloak: `role` is a realm role, `client:role` a client role).
fn roles_policy(w: &mut Writer<'_>) -> (Option<Mapping>, Vec<String>) {
    let mut groups = w.list("allowed-group").unwrap_or_default();
    groups.extend(w.list("keycloak-group").unwrap_or_default());
    let roles = w.list("allowed-role").unwrap_or_default();
    if roles.is_empty() {
        return (None, groups);
    }
    let groups_claim =
        w.o.text("oidc-groups-claim")
            .unwrap_or("groups")
            .to_string();
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut terms: Vec<String> = groups
        .iter()
        .map(|g| format!("{} in claims.{groups_claim}", quote(g)))
        .collect();
    for role in &roles {
        terms.push(match role.split_once(':') {
            Some((client, role)) => format!(
                "{} in claims.resource_access[{}].roles",
                quote(role),
                quote(client)
            ),
            None => format!("{} in claims.realm_access.roles", quote(role)),
        });
    }
    let mut policy = Mapping::new();
    put(&mut policy, "name", "oauth2-proxy-allowed-roles");
    put(&mut policy, "expression", terms.join(" || "));
    let name = w.name("allowed-role");
    w.r.carried(&name, "policies[0] oauth2-proxy-allowed-roles: a CEL expression over realm_access.roles / resource_access[client].roles (or the allowed groups)");
    (Some(policy), Vec::new())
}

fn cookie(w: &mut Writer<'_>) -> Mapping {
    let mut c = Mapping::new();
    put(
        &mut c,
        "name",
        w.text("cookie-name")
            .unwrap_or_else(|| "_oauth2_proxy".into()),
    );
    if let Some(file) = w.text("cookie-secret-file") {
        put(&mut c, "secret_file", file);
        w.get("cookie-secret");
    } else if let Some(secret) = w.secret("cookie-secret", "cookie.secret") {
        put(&mut c, "secret", secret);
    }
    if let Some(domains) = w.list("cookie-domain") {
        put(&mut c, "domains", seq(domains));
    }
    put(
        &mut c,
        "path",
        w.text("cookie-path").unwrap_or_else(|| "/".into()),
    );
    put(&mut c, "secure", w.flag("cookie-secure").unwrap_or(true));
    put(
        &mut c,
        "http_only",
        w.flag("cookie-httponly").unwrap_or(true),
    );
    let same_site = w.text("cookie-samesite").unwrap_or_default();
    let same_site = if same_site.is_empty() {
        w.r.carried("--cookie-samesite", "cookie.same_site: lax (oauth2-proxy sent no SameSite attribute; browsers treat that as lax)");
        "lax".to_string()
    } else {
        same_site.to_ascii_lowercase()
    };
    put(&mut c, "same_site", same_site);
    let duration = |w: &mut Writer<'_>, flag: &str, default: &str| {
        let text = w.text(flag).unwrap_or_else(|| default.to_string());
        go_duration(&text).map_or(text, authgate_duration)
    };
    put(&mut c, "expire", duration(w, "cookie-expire", "168h"));
    let refresh = duration(w, "cookie-refresh", "0");
    if refresh != "0s" {
        let name = w.name("cookie-refresh");
        w.r.carried(&name, "cookie.refresh (authgate refreshes with the refresh_token once the session is older than this)");
    }
    put(&mut c, "refresh", refresh);
    for flag in [
        "cookie-csrf-per-request",
        "cookie-csrf-expire",
        "cookie-csrf-per-request-limit",
        "cookie-csrf-samesite",
    ] {
        w.not_carried(flag, "authgate gives every login flow its own CSRF cookie");
    }
    c
}

fn session(w: &mut Writer<'_>) -> Mapping {
    let mut s = Mapping::new();
    let store = w
        .text("session-store-type")
        .unwrap_or_else(|| "cookie".into());
    put(&mut s, "store", store.clone());
    w.not_carried(
        "session-cookie-minimal",
        "authgate keeps the tokens it needs for refresh and logout",
    );
    let sentinel = w.flag("redis-use-sentinel").unwrap_or(false);
    let cluster = w.flag("redis-use-cluster").unwrap_or(false);
    let password = match w.get("redis-password").cloned() {
        Some(setting) => match (&setting.env_ref, &setting.value) {
            (Some(var), _) => Some(format!("${{{var}}}")),
            (None, super::options::Value::Text(t)) => {
                w.r.warn("--redis-password", "given in clear, so carried in clear in session.redis.url; use ${VAR} in the URL");
                Some(
                    percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
                        .to_string(),
                )
            }
            _ => None,
        },
        None => None,
    };
    let user = w.text("redis-username").unwrap_or_default();
    let auth = match (&password, user.is_empty()) {
        (Some(p), _) => format!("{user}:{p}@"),
        (None, false) => format!("{user}@"),
        (None, true) => String::new(),
    };
    let hosts = |urls: Vec<String>| -> String {
        urls.iter()
            .map(|u| {
                let rest = u.split_once("://").map_or(u.as_str(), |(_, r)| r);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                rest.split('/').next().unwrap_or_default().to_string()
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let url = if sentinel {
        let master = w.text("redis-sentinel-master-name").unwrap_or_default();
        let nodes = hosts(w.list("redis-sentinel-connection-urls").unwrap_or_default());
        Some(format!("redis+sentinel://{auth}{nodes}/{master}"))
    } else if cluster {
        let nodes = hosts(w.list("redis-cluster-connection-urls").unwrap_or_default());
        Some(format!("redis+cluster://{auth}{nodes}"))
    } else {
        w.text("redis-connection-url")
            .map(|u| match u.split_once("://") {
                Some((scheme, rest)) if !auth.is_empty() && !rest.contains('@') => {
                    format!("{scheme}://{auth}{rest}")
                }
                _ => u,
            })
    };
    let mut redis = Mapping::new();
    if let Some(url) = url {
        put(&mut redis, "url", url);
    }
    if let Some(p) = w.secret("redis-sentinel-password", "session.redis.sentinel_password") {
        put(&mut redis, "sentinel_password", p);
    }
    if !redis.is_empty() {
        put(&mut s, "redis", Yaml::Mapping(redis));
    }
    w.not_carried(
        "redis-ca-path",
        "authgate verifies Redis TLS against the web PKI roots",
    );
    w.not_carried(
        "redis-connection-idle-timeout",
        "authgate manages its Redis connections itself",
    );
    w.get("redis-use-sentinel");
    s
}

/// `--upstream`s or the alpha config's upstreams; true when the only one is
/// `static://200` (ext_authz only).
fn upstreams(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> (Vec<Yaml>, bool) {
    let mut routes: Vec<(String, String, String, Option<u16>)> = Vec::new(); // name, path, url, static
    match alpha {
        Some(a) => {
            for u in &a.upstreams {
                let name = format!("alphaConfig upstream {}", u.id);
                if u.rewrite {
                    w.r.not_carried(
                        &format!("{name} rewriteTarget"),
                        "authgate forwards paths unchanged",
                    );
                }
                routes.push((name, u.path.clone(), u.uri.clone(), u.static_code));
            }
        }
        None => {
            for u in w.list("upstream").unwrap_or_default() {
                let name = format!("--upstream={u}");
                if let Some(code) = u.strip_prefix("static://") {
                    routes.push((
                        name,
                        "/".into(),
                        String::new(),
                        Some(code.parse().unwrap_or(200)),
                    ));
                    continue;
                }
                match url::Url::parse(&u) {
                    Ok(url) => {
                        let path = url.path().to_string();
                        routes.push((name, path, u.clone(), None));
                    }
                    Err(_) => routes.push((name, "/".into(), u.clone(), None)),
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut ext_authz_only = false;
    for (name, path, target, code) in routes {
        match code {
            Some(200) => ext_authz_only = true,
            Some(code) => w.r.not_carried(
                &name,
                &format!("authgate answers no static {code}; use an upstream"),
            ),
            None => match url::Url::parse(&target) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {
                    let mut m = Mapping::new();
                    put(
                        &mut m,
                        "path",
                        if path.is_empty() {
                            "/".to_string()
                        } else {
                            path
                        },
                    );
                    let origin = url.origin().ascii_serialization();
                    put(&mut m, "url", origin);
                    if w.flag("pass-host-header") == Some(false) {
                        put(&mut m, "host", url.host_str().unwrap_or_default());
                    }
                    out.push(Yaml::Mapping(m));
                }
                _ => w.r.not_carried(
                    &name,
                    "authgate proxies to http(s) upstreams only (no file:// or unix://)",
                ),
            },
        }
    }
    for flag in [
        "proxy-websockets",
        "flush-interval",
        "upstream-timeout",
        "disable-keep-alives",
        "pass-host-header",
    ] {
        if w.o.get(flag).is_some() && flag != "pass-host-header" {
            w.not_carried(flag, "authgate's proxy (Pingora) handles this itself");
        }
        w.get(flag);
    }
    (out, ext_authz_only)
}

fn headers(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> Mapping {
    let mut h = Mapping::new();
    let mut identity: Vec<(String, &'static str)> = Vec::new();
    let mut pass_authorization = w.flag("pass-authorization-header").unwrap_or(false);
    let mut pass_access_token = w.flag("pass-access-token").unwrap_or(false);
    let field = |claim: &str| match claim {
        "user" => Some("user"),
        "email" => Some("email"),
        "groups" => Some("groups"),
        "preferred_username" => Some("preferred_username"),
        _ => None,
    };
    match alpha {
        Some(a) => {
            for header in &a.headers {
                if header.other_values {
                    w.r.not_carried(
                        &format!("{} {}", header.origin, header.name),
                        "authgate sets identity claims only (no fixed values, env or basic auth)",
                    );
                }
                for (claim, prefix) in &header.claims {
                    match (field(claim), claim.as_str()) {
                        (Some(f), _) => {
                            if !identity.iter().any(|(n, _)| n.eq_ignore_ascii_case(&header.name)) {
                                identity.push((header.name.clone(), f));
                            }
                        }
                        (None, "access_token") => {
                            pass_access_token = true;
                            w.r.carried(&format!("{} {}", header.origin, header.name), "headers.pass_access_token (sent as X-Forwarded-Access-Token)");
                        }
                        (None, "id_token") if header.name.eq_ignore_ascii_case("authorization") && prefix.trim() == "Bearer" => {
                            pass_authorization = true;
                        }
                        _ => w.r.not_carried(&format!("{} {} (claim {claim})", header.origin, header.name), "authgate's identity headers carry user, email, groups and preferred_username"),
                    }
                }
            }
        }
        None => {
            let set = |identity: &mut Vec<(String, &'static str)>, prefix: &str| {
                for (suffix, f) in [
                    ("User", "user"),
                    ("Email", "email"),
                    ("Preferred-Username", "preferred_username"),
                    ("Groups", "groups"),
                ] {
                    identity.push((format!("{prefix}{suffix}"), f));
                }
            };
            if w.flag("set-xauthrequest").unwrap_or(false) {
                set(&mut identity, "X-Auth-Request-");
            }
            if w.flag("pass-user-headers").unwrap_or(true) {
                set(&mut identity, "X-Forwarded-");
            }
            if w.flag("prefer-email-to-user") == Some(true) {
                for (name, f) in &mut identity {
                    if *f == "user" && name.starts_with("X-Forwarded-") {
                        *f = "email";
                    }
                }
            }
            if w.flag("set-authorization-header") == Some(true) {
                pass_authorization = true;
                w.r.carried("--set-authorization-header", "headers.pass_authorization (authgate sends the ID token upstream and on ext_authz allows)");
            }
            if w.flag("pass-basic-auth") == Some(true) {
                w.r.not_carried(
                    "--pass-basic-auth",
                    "authgate sends no Basic credentials upstream",
                );
            }
            w.not_carried(
                "basic-auth-password",
                "authgate sends no Basic credentials upstream",
            );
            w.not_carried(
                "set-basic-auth",
                "authgate sends no Basic credentials upstream",
            );
            if w.flag("skip-auth-strip-headers") == Some(false) {
                w.r.carried(
                    "--skip-auth-strip-headers=false",
                    "authgate always strips client-sent identity headers",
                );
            }
        }
    }
    put(&mut h, "pass_authorization", pass_authorization);
    put(&mut h, "pass_access_token", pass_access_token);
    let list = identity
        .into_iter()
        .map(|(name, claim)| {
            let mut m = Mapping::new();
            put(&mut m, "name", name);
            put(&mut m, "claim", claim);
            Yaml::Mapping(m)
        })
        .collect();
    put(&mut h, "identity", Yaml::Sequence(list));
    h
}
