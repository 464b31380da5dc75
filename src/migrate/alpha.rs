//! oauth2-proxy's alpha config (`--alpha-config`, the chart's `alphaConfig`):
//! its provider becomes the same legacy options the flags set (so one writer
//! serves both), and what has no legacy twin (injected headers, login URL
//! parameters, upstreams with a path) is kept as [`AlphaParts`]. oauth2-proxy
//! decodes this file strictly: an unknown key is refused, as it refuses it.

use serde_yaml::Value as Yaml;

use super::catalog::by_flag;
use super::options::{Options, Raw, Refused, Source};
use super::Report;

/// What the alpha config says that the legacy options cannot.
#[derive(Debug, Default)]
pub struct AlphaParts {
    /// `upstreamConfig.upstreams`.
    pub upstreams: Vec<AlphaUpstream>,
    /// `injectRequestHeaders` then `injectResponseHeaders`.
    pub headers: Vec<AlphaHeader>,
    /// `providers[0].loginURLParameters`: name, default values, whether users may pass their own.
    pub login_params: Vec<(String, Vec<String>, bool)>,
}

/// One `upstreamConfig.upstreams[]` entry.
#[derive(Debug, Default, Clone)]
pub struct AlphaUpstream {
    /// `id`, for messages.
    pub id: String,
    /// `path` (a prefix, or a regex with `rewriteTarget`).
    pub path: String,
    /// `uri`.
    pub uri: String,
    /// `static: true`: answered by oauth2-proxy itself with `staticCode`.
    pub static_code: Option<u16>,
    /// `rewriteTarget` was set (path regexes and rewrites are not carried).
    pub rewrite: bool,
}

/// One injected header: its name and the claims its values carry.
#[derive(Debug, Default, Clone)]
pub struct AlphaHeader {
    /// Where it was written (`injectRequestHeaders[0]`), for messages.
    pub origin: String,
    /// Header name.
    pub name: String,
    /// `values[].claim` with its `prefix`.
    pub claims: Vec<(String, String)>,
    /// Any value that is not a claim (`value`, `fromEnv`, `basicAuthPassword`...).
    pub other_values: bool,
}

/// Provider keys and the legacy flag each one is (`None`: read elsewhere).
const PROVIDER_KEYS: &[(&str, Option<&str>)] = &[
    ("id", None),
    ("clientID", Some("client-id")),
    ("clientSecret", Some("client-secret")),
    ("clientSecretFile", Some("client-secret-file")),
    ("provider", Some("provider")),
    ("name", Some("provider-display-name")),
    ("caFiles", Some("provider-ca-file")),
    ("useSystemTrustStore", Some("use-system-trust-store")),
    ("loginURL", Some("login-url")),
    ("loginURLParameters", None),
    (
        "authRequestResponseMode",
        Some("auth-request-response-mode"),
    ),
    ("redeemURL", Some("redeem-url")),
    ("profileURL", Some("profile-url")),
    (
        "skipClaimsFromProfileURL",
        Some("skip-claims-from-profile-url"),
    ),
    ("resource", Some("resource")),
    ("validateURL", Some("validate-url")),
    ("scope", Some("scope")),
    ("allowedGroups", Some("allowed-group")),
    ("code_challenge_method", Some("code-challenge-method")),
    ("additionalClaims", None),
    ("backendLogoutURL", Some("backend-logout-url")),
    ("keycloakConfig", None),
    ("azureConfig", None),
    ("microsoftEntraIDConfig", None),
    ("ADFSConfig", None),
    ("bitbucketConfig", None),
    ("githubConfig", None),
    ("gitlabConfig", None),
    ("googleConfig", None),
    ("oidcConfig", None),
    ("loginGovConfig", None),
];

/// Nested provider sections: (section, key, legacy flag or None = not carried).
const NESTED_KEYS: &[(&str, &str, Option<&str>)] = &[
    ("oidcConfig", "issuerURL", Some("oidc-issuer-url")),
    (
        "oidcConfig",
        "insecureAllowUnverifiedEmail",
        Some("insecure-oidc-allow-unverified-email"),
    ),
    (
        "oidcConfig",
        "insecureSkipIssuerVerification",
        Some("insecure-oidc-skip-issuer-verification"),
    ),
    (
        "oidcConfig",
        "insecureSkipNonce",
        Some("insecure-oidc-skip-nonce"),
    ),
    ("oidcConfig", "skipDiscovery", Some("skip-oidc-discovery")),
    ("oidcConfig", "jwksURL", Some("oidc-jwks-url")),
    ("oidcConfig", "publicKeyFiles", Some("oidc-public-key-file")),
    ("oidcConfig", "emailClaim", Some("oidc-email-claim")),
    ("oidcConfig", "groupsClaim", Some("oidc-groups-claim")),
    ("oidcConfig", "userIDClaim", Some("user-id-claim")),
    ("oidcConfig", "audienceClaims", Some("oidc-audience-claim")),
    ("oidcConfig", "extraAudiences", Some("oidc-extra-audience")),
    (
        "oidcConfig",
        "enabledSigningAlgs",
        Some("oidc-enabled-signing-alg"),
    ),
    ("oidcConfig", "jwtKey", Some("jwt-key")),
    ("oidcConfig", "jwtKeyFile", Some("jwt-key-file")),
    ("oidcConfig", "pubjwkURL", Some("pubjwk-url")),
    ("keycloakConfig", "groups", Some("keycloak-group")),
    ("keycloakConfig", "roles", Some("allowed-role")),
    ("githubConfig", "org", Some("github-org")),
    ("githubConfig", "team", Some("github-team")),
    ("githubConfig", "repo", Some("github-repo")),
    ("githubConfig", "token", Some("github-token")),
    ("githubConfig", "users", Some("github-user")),
    ("gitlabConfig", "group", Some("gitlab-group")),
    ("gitlabConfig", "projects", Some("gitlab-project")),
    ("googleConfig", "group", Some("google-group")),
    ("googleConfig", "adminEmail", Some("google-admin-email")),
    (
        "googleConfig",
        "serviceAccountJson",
        Some("google-service-account-json"),
    ),
    (
        "googleConfig",
        "useApplicationDefaultCredentials",
        Some("google-use-application-default-credentials"),
    ),
    (
        "googleConfig",
        "targetPrincipal",
        Some("google-target-principal"),
    ),
    (
        "googleConfig",
        "useOrganizationID",
        Some("google-use-organization-id"),
    ),
    (
        "googleConfig",
        "adminAPIUserScope",
        Some("google-admin-api-user-scope"),
    ),
    ("azureConfig", "tenant", Some("azure-tenant")),
    (
        "azureConfig",
        "graphGroupField",
        Some("azure-graph-group-field"),
    ),
    (
        "microsoftEntraIDConfig",
        "allowedTenants",
        Some("entra-id-allowed-tenant"),
    ),
    (
        "microsoftEntraIDConfig",
        "federatedTokenAuth",
        Some("entra-id-federated-token-auth"),
    ),
    ("bitbucketConfig", "team", Some("bitbucket-team")),
    (
        "bitbucketConfig",
        "repository",
        Some("bitbucket-repository"),
    ),
    ("ADFSConfig", "skipScope", None),
    ("loginGovConfig", "jwtKey", None),
    ("loginGovConfig", "jwtKeyFile", None),
    ("loginGovConfig", "pubjwkURL", None),
];

const TOP_KEYS: &[&str] = &[
    "upstreamConfig",
    "injectRequestHeaders",
    "injectResponseHeaders",
    "server",
    "metricsServer",
    "providers",
];

/// Reads one alpha config document into `options` (provider and listeners)
/// and the returned parts; `origin` names the file in messages.
///
/// # Errors
/// [`Refused`] with oauth2-proxy's reason: unknown keys, more than one provider.
pub fn read(
    doc: &Yaml,
    origin: &str,
    options: &mut Options,
    report: &mut Report,
) -> Result<AlphaParts, Refused> {
    let mut parts = AlphaParts::default();
    let Some(top) = doc.as_mapping() else {
        if doc.is_null() {
            return Ok(parts);
        }
        return Err(Refused(format!(
            "{origin}: error unmarshalling config: not a mapping"
        )));
    };
    let invalid: Vec<String> = top
        .keys()
        .filter_map(|k| k.as_str())
        .filter(|k| !TOP_KEYS.contains(k))
        .map(String::from)
        .collect();
    if !invalid.is_empty() {
        return Err(Refused(format!(
            "{origin}: error decoding config: '' has invalid keys: {}",
            invalid.join(", ")
        )));
    }
    let set = |options: &mut Options, flag: &str, value: &Yaml, key: &str| -> Result<(), Refused> {
        let Some(spec) = by_flag(flag) else {
            return Ok(());
        };
        let raw = match value {
            Yaml::Null => return Ok(()),
            Yaml::Bool(b) => Raw::Bool(*b),
            Yaml::Sequence(items) => Raw::List(items.iter().filter_map(scalar).collect()),
            other => Raw::Text(scalar(other).unwrap_or_default()),
        };
        options.set(spec, raw, Source::File, &format!("alphaConfig {key}"), None)
    };

    if let Some(providers) = top.get("providers").and_then(Yaml::as_sequence) {
        if providers.len() > 1 {
            // oauth2-proxy's own validation: one provider only.
            return Err(Refused(format!(
                "{origin}: providers: Multiple providers are not supported yet (oauth2-proxy refuses {} providers)",
                providers.len()
            )));
        }
        if let Some(p) = providers.first().and_then(Yaml::as_mapping) {
            for (k, v) in p {
                let key = k.as_str().unwrap_or_default();
                let label = format!("providers[0].{key}");
                match PROVIDER_KEYS.iter().find(|(name, _)| *name == key) {
                    None => {
                        return Err(Refused(format!(
                            "{origin}: error decoding config: 'providers[0]' has invalid keys: {key}"
                        )))
                    }
                    Some((_, Some(flag))) => set(options, flag, v, &label)?,
                    Some((_, None)) => match key {
                        "id" => {}
                        "loginURLParameters" => {
                            for param in v.as_sequence().into_iter().flatten() {
                                let name = param.get("name").and_then(scalar).unwrap_or_default();
                                let defaults = param
                                    .get("default")
                                    .and_then(Yaml::as_sequence)
                                    .map(|s| s.iter().filter_map(scalar).collect())
                                    .unwrap_or_default();
                                parts
                                    .login_params
                                    .push((name, defaults, param.get("allowed").is_some()));
                            }
                        }
                        "additionalClaims" => report.not_carried(
                            &format!("alphaConfig {label}"),
                            "authgate's identity headers carry user, email, groups and preferred_username only",
                        ),
                        section => {
                            let Some(map) = v.as_mapping() else { continue };
                            for (nk, nv) in map {
                                let nkey = nk.as_str().unwrap_or_default();
                                let nlabel = format!("{label}.{nkey}");
                                match NESTED_KEYS
                                    .iter()
                                    .find(|(s, n, _)| *s == section && *n == nkey)
                                {
                                    None => {
                                        return Err(Refused(format!(
                                            "{origin}: error decoding config: '{label}' has invalid keys: {nkey}"
                                        )))
                                    }
                                    Some((_, _, Some(flag))) => set(options, flag, nv, &nlabel)?,
                                    Some((_, _, None)) => report.not_carried(
                                        &format!("alphaConfig {nlabel}"),
                                        "authgate speaks OpenID Connect only",
                                    ),
                                }
                            }
                        }
                    },
                }
            }
        }
    }

    for (section, flag) in [
        ("server", "http-address"),
        ("metricsServer", "metrics-address"),
    ] {
        let Some(server) = top.get(section).and_then(Yaml::as_mapping) else {
            continue;
        };
        for (k, v) in server {
            match k.as_str().unwrap_or_default() {
                "BindAddress" => set(options, flag, v, &format!("{section}.BindAddress"))?,
                "SecureBindAddress" if section == "server" => {
                    set(options, "https-address", v, "server.SecureBindAddress")?
                }
                "TLS" => report.not_carried(
                    &format!("alphaConfig {section}.TLS"),
                    "set server.tls.cert_file and key_file by hand (authgate reads PEM files)",
                ),
                other => {
                    return Err(Refused(format!(
                        "{origin}: error decoding config: '{section}' has invalid keys: {other}"
                    )))
                }
            }
        }
    }

    if let Some(upstream_config) = top.get("upstreamConfig") {
        if upstream_config.get("proxyRawPath").is_some() {
            report.not_carried(
                "alphaConfig upstreamConfig.proxyRawPath",
                "authgate forwards the path it decided on (normalised)",
            );
        }
        for (i, u) in upstream_config
            .get("upstreams")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let text = |key: &str| u.get(key).and_then(scalar).unwrap_or_default();
            let is_static = u.get("static").and_then(Yaml::as_bool).unwrap_or(false);
            let code = u
                .get("staticCode")
                .and_then(Yaml::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(200);
            parts.upstreams.push(AlphaUpstream {
                id: if text("id").is_empty() {
                    format!("upstreams[{i}]")
                } else {
                    text("id")
                },
                path: text("path"),
                uri: text("uri"),
                static_code: is_static.then_some(code),
                rewrite: !text("rewriteTarget").is_empty(),
            });
        }
    }

    for section in ["injectRequestHeaders", "injectResponseHeaders"] {
        for (i, h) in top
            .get(section)
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut header = AlphaHeader {
                origin: format!("alphaConfig {section}[{i}]"),
                name: h.get("name").and_then(scalar).unwrap_or_default(),
                ..AlphaHeader::default()
            };
            for v in h
                .get("values")
                .and_then(Yaml::as_sequence)
                .into_iter()
                .flatten()
            {
                match v.get("claim").and_then(scalar) {
                    Some(claim) => header
                        .claims
                        .push((claim, v.get("prefix").and_then(scalar).unwrap_or_default())),
                    None => header.other_values = true,
                }
            }
            parts.headers.push(header);
        }
    }
    Ok(parts)
}

/// A YAML scalar as text (numbers and booleans as written).
pub fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Bool(b) => Some(b.to_string()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str) -> Result<(Options, AlphaParts, Report), Refused> {
        let doc: Yaml = serde_yaml::from_str(text).unwrap();
        let mut options = Options::default();
        let mut report = Report::default();
        let parts = read(&doc, "alpha.yaml", &mut options, &mut report)?;
        Ok((options, parts, report))
    }

    #[test]
    fn provider_keys_become_the_legacy_options() {
        let (o, parts, _) = read_str(
            r#"
providers:
- id: kc
  provider: keycloak-oidc
  clientID: app
  allowedGroups: [admins]
  keycloakConfig: { roles: [editor] }
  oidcConfig: { issuerURL: "https://idp/realms/x", skipDiscovery: true, emailClaim: mail }
  loginURLParameters:
  - name: kc_idp_hint
    default: [github]
upstreamConfig:
  upstreams: [{ id: s, path: /, static: true, staticCode: 200 }]
injectRequestHeaders:
- name: X-Email
  values: [{ claim: email }]
"#,
        )
        .unwrap();
        assert_eq!(o.text("client-id"), Some("app"));
        assert_eq!(o.text("provider"), Some("keycloak-oidc"));
        assert_eq!(o.list("allowed-group").unwrap(), ["admins"]);
        assert_eq!(o.list("allowed-role").unwrap(), ["editor"]);
        assert_eq!(o.flag("skip-oidc-discovery"), Some(true));
        assert_eq!(o.text("oidc-email-claim"), Some("mail"));
        assert_eq!(
            parts.login_params,
            [("kc_idp_hint".into(), vec!["github".into()], false)]
        );
        assert_eq!(parts.upstreams[0].static_code, Some(200));
        assert_eq!(parts.headers[0].claims, [("email".into(), String::new())]);
    }

    #[test]
    fn unknown_keys_and_several_providers_are_refused_as_oauth2_proxy_does() {
        let err = read_str("providers: [{ clientId: x }]").unwrap_err();
        assert!(err.0.contains("invalid keys: clientId"), "{err}");
        let err = read_str("upstream: []").unwrap_err();
        assert!(err.0.contains("invalid keys: upstream"), "{err}");
        let err = read_str("providers: [{ id: a }, { id: b }]").unwrap_err();
        assert!(err.0.contains("Multiple providers"), "{err}");
    }
}
