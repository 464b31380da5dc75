//! The `provider` section (issuer or explicit endpoints, client, scopes,
//! claims, PKCE, login parameters) and Keycloak's `--allowed-role`s as a
//! policy over realm and client roles.

use serde_yaml::{Mapping, Value as Yaml};

use super::super::alpha::AlphaParts;
use super::{put, seq, Writer};

/// Builds `provider` from the provider flags or the alpha config's provider.
pub(super) fn provider(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> Mapping {
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
            (None, super::super::options::Value::Text(t)) => t,
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
pub(super) fn roles_policy(w: &mut Writer<'_>) -> (Option<Mapping>, Vec<String>) {
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
