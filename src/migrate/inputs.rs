//! The inputs oauth2-proxy reads, each into the one [`Options`] model: the
//! TOML config file, `OAUTH2_PROXY_*` variables and command-line flags; and
//! the Helm chart's values file, read the way the chart's templates turn it
//! into those three (`config.*` secrets into variables, `extraArgs` into
//! flags, `config.configFile` into the TOML file, `alphaConfig` into the
//! alpha config).

use serde_yaml::Value as Yaml;

use super::alpha::scalar;
use super::catalog::{by_cfg, by_env, by_flag};
use super::options::{Options, Raw, Refused, Source};
use super::{Input, MigrateError, Report};

// === Flags ===

/// What the flags asked for besides options: more files to read.
#[derive(Debug, Default)]
pub struct FlagFiles {
    /// `--config`.
    pub config: Option<String>,
    /// `--alpha-config`.
    pub alpha_config: Option<String>,
}

/// Reads oauth2-proxy command-line flags (`--name=value`, `--name value`,
/// `--bool`; one or two dashes, as Go's pflag takes them).
///
/// # Errors
/// [`Refused`] for an unknown flag or a value oauth2-proxy refuses, with its reason.
pub fn read_flags(
    args: &[String],
    origin: &str,
    options: &mut Options,
    report: &mut Report,
) -> Result<FlagFiles, Refused> {
    let mut files = FlagFiles::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(Refused(format!(
                "{origin}: {arg:?}: oauth2-proxy takes no positional arguments"
            )));
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let label = format!("--{name}");
        match name {
            "config" | "alpha-config" => {
                let value = match value {
                    Some(v) => v,
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => return Err(Refused(format!("flag needs an argument: {label}"))),
                };
                if name == "config" {
                    files.config = Some(value);
                } else {
                    files.alpha_config = Some(value);
                }
                continue;
            }
            "version" | "convert-config-to-alpha" | "config-test" => {
                report.not_carried(&label, "a command, not a setting");
                continue;
            }
            _ => {}
        }
        let Some(spec) = by_flag(name) else {
            return Err(Refused(format!(
                "unknown flag: {label} (oauth2-proxy refuses it)"
            )));
        };
        let raw = match value {
            Some(v) => Raw::Text(v),
            None if spec.kind == super::catalog::Kind::Bool => Raw::Bare,
            None if i < args.len() => {
                i += 1;
                Raw::Text(args[i - 1].clone())
            }
            None => Raw::Bare,
        };
        options.set(spec, raw, Source::Flag, &label, None)?;
    }
    Ok(files)
}

// === Environment ===

/// Reads `OAUTH2_PROXY_*` variables. Each value is remembered as a
/// reference to its variable, so secrets are written as `${VAR}`.
/// Variables that name no option are reported and ignored, as
/// oauth2-proxy ignores them.
///
/// # Errors
/// [`Refused`] for a value oauth2-proxy refuses.
pub fn read_env(
    vars: &[(String, String)],
    options: &mut Options,
    report: &mut Report,
) -> Result<(), Refused> {
    for (name, value) in vars {
        if !name.starts_with("OAUTH2_PROXY_") {
            continue;
        }
        match by_env(name) {
            Some(spec) => options.set(
                spec,
                Raw::Text(value.clone()),
                Source::Env,
                name,
                Some(name.clone()),
            )?,
            None => report.not_carried(
                name,
                "names no oauth2-proxy option (oauth2-proxy ignores it too)",
            ),
        }
    }
    Ok(())
}

// === TOML config file ===

/// Reads oauth2-proxy's TOML config file.
///
/// # Errors
/// [`MigrateError::Parse`] naming the file, line and column;
/// [`MigrateError::Refused`] for keys oauth2-proxy does not know ("has
/// invalid keys") or values it refuses.
pub fn read_toml(text: &str, input: &Input, options: &mut Options) -> Result<(), MigrateError> {
    let table: toml::Table = toml::from_str(text).map_err(|err| {
        let (line, col) = err
            .span()
            .map(|s| line_col(text, s.start))
            .unwrap_or((1, 1));
        MigrateError::Parse {
            file: input.name(),
            line,
            column: col,
            message: err.message().to_string(),
        }
    })?;
    let mut invalid = Vec::new();
    for (key, value) in table {
        let Some(spec) = by_cfg(&key) else {
            invalid.push(key);
            continue;
        };
        let raw = match value {
            toml::Value::String(s) => Raw::Text(s),
            toml::Value::Boolean(b) => Raw::Bool(b),
            toml::Value::Integer(n) => Raw::Text(n.to_string()),
            toml::Value::Float(f) => Raw::Text(f.to_string()),
            toml::Value::Array(items) => Raw::List(
                items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    })
                    .collect(),
            ),
            // Dates and tables are no oauth2-proxy option's type.
            _ => Raw::Text(String::new()),
        };
        options
            .set(
                spec,
                raw,
                Source::File,
                &format!("{}: {key}", input.name()),
                None,
            )
            .map_err(MigrateError::Refused)?;
    }
    if !invalid.is_empty() {
        return Err(MigrateError::Refused(Refused(format!(
            "{}: error unmarshalling config: '' has invalid keys: {}",
            input.name(),
            invalid.join(", ")
        ))));
    }
    Ok(())
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// === Helm values ===

/// What the chart's values turn into, for the caller to read in order.
#[derive(Debug, Default)]
pub struct HelmParts {
    /// `extraArgs` (and `config.cookieName`, the listeners) as flags.
    pub flags: Vec<String>,
    /// Variables the chart sets: name, value (None: from a Secret at run time).
    pub env: Vec<(String, Option<String>)>,
    /// The TOML config file the chart mounts.
    pub toml: Option<String>,
    /// The alpha config the chart generates.
    pub alpha: Option<Yaml>,
    /// `authenticatedEmailsFile.restricted_access`.
    pub emails: Option<Vec<String>>,
}

/// Chart values that configure the Deployment, not oauth2-proxy.
const DEPLOYMENT_KEYS: &[&str] = &[
    "global",
    "namespaceOverride",
    "kubeVersion",
    "image",
    "imagePullSecrets",
    "replicaCount",
    "resources",
    "service",
    "serviceAccount",
    "ingress",
    "gatewayApi",
    "extraVolumes",
    "extraVolumeMounts",
    "extraContainers",
    "extraInitContainers",
    "extraObjects",
    "priorityClassName",
    "hostAliases",
    "tolerations",
    "nodeSelector",
    "affinity",
    "topologySpreadConstraints",
    "podAnnotations",
    "podLabels",
    "deploymentAnnotations",
    "podSecurityContext",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
    "podDisruptionBudget",
    "autoscaling",
    "httpScheme",
    "revisionHistoryLimit",
    "strategy",
    "lifecycle",
    "initContainers",
    "customLabels",
    "checkDeprecation",
    "enableServiceLinks",
    "hostAlias",
    "namespace",
    "terminationGracePeriodSeconds",
    "redis",
    "envFrom",
    "serviceMonitor",
    "metrics",
    "wait-for-redis",
    "initContainers",
    "podDisruptionBudget",
    "automountServiceAccountToken",
];

/// Reads a values file of the oauth2-proxy chart (github.com/oauth2-proxy/manifests).
///
/// # Errors
/// [`MigrateError::Unreadable`] when the values point at something only
/// the cluster has (`existingConfig`, an emails list in a ConfigMap).
pub fn read_helm(
    values: &Yaml,
    input: &Input,
    report: &mut Report,
) -> Result<HelmParts, MigrateError> {
    let mut parts = HelmParts::default();
    let get = |path: &[&str]| -> Option<&Yaml> {
        let mut v = values;
        for key in path {
            v = v.get(*key)?;
        }
        (!v.is_null()).then_some(v)
    };
    let text = |path: &[&str]| get(path).and_then(scalar).filter(|s| !s.is_empty());
    let unreadable = |what: &str| {
        MigrateError::Unreadable {
        file: input.name(),
        message: format!("{what}: lives in the cluster, not in the values file; pass its content with --config/--alpha-config or as flags"),
    }
    };
    let alpha_enabled = get(&["alphaConfig", "enabled"])
        .and_then(Yaml::as_bool)
        .unwrap_or(false);
    let metrics_enabled = get(&["metrics", "enabled"])
        .and_then(Yaml::as_bool)
        .unwrap_or(true);

    // Secrets: the chart stores them in a Secret and exposes them as variables.
    let as_secrets = get(&["proxyVarsAsSecrets"])
        .and_then(Yaml::as_bool)
        .unwrap_or(true);
    let existing_secret = text(&["config", "existingSecret"]).is_some();
    if as_secrets {
        for (key, var) in [
            ("clientID", "OAUTH2_PROXY_CLIENT_ID"),
            ("clientSecret", "OAUTH2_PROXY_CLIENT_SECRET"),
            ("cookieSecret", "OAUTH2_PROXY_COOKIE_SECRET"),
        ] {
            if existing_secret {
                parts.env.push((var.into(), None));
            } else if let Some(v) = text(&["config", key]) {
                parts.env.push((var.into(), Some(v)));
            }
        }
    }
    if let Some(name) = text(&["config", "cookieName"]) {
        parts.flags.push(format!("--cookie-name={name}"));
    }
    if get(&["config", "existingConfig"]).is_some() {
        return Err(unreadable("config.existingConfig"));
    }
    let force_legacy = get(&["config", "forceLegacyConfig"])
        .and_then(Yaml::as_bool)
        .unwrap_or(true);
    match text(&["config", "configFile"]) {
        Some(_) if alpha_enabled && !force_legacy => {
            report.not_carried(
                "helm config.configFile",
                "the chart ignores it: alphaConfig is on and forceLegacyConfig is false",
            );
        }
        Some(file) => parts.toml = Some(file),
        None => {
            // The chart generates the file: emailDomains (default "*"), and
            // upstreams when alphaConfig is off.
            let list = |path: &[&str], default: &str| -> Vec<String> {
                match get(path).and_then(Yaml::as_sequence) {
                    Some(s) => s.iter().filter_map(scalar).collect(),
                    None => vec![default.to_string()],
                }
            };
            let quote = |items: Vec<String>| {
                items
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut toml = format!(
                "email_domains = [ {} ]\n",
                quote(list(&["config", "emailDomains"], "*"))
            );
            if !alpha_enabled {
                toml.push_str(&format!(
                    "upstreams = [ {} ]\n",
                    quote(list(&["config", "upstreams"], "file:///dev/null"))
                ));
            }
            parts.toml = Some(toml);
        }
    }
    if let Some(google) = get(&["config", "google"]).and_then(Yaml::as_mapping) {
        if let Some(groups) = google.get("groups").and_then(Yaml::as_sequence) {
            for g in groups.iter().filter_map(scalar) {
                parts.flags.push(format!("--google-group={g}"));
            }
        }
        if google.get("adminEmail").is_some() {
            parts.flags.push("--google-admin-email=configured".into());
        }
    }

    // Listeners: fixed by the chart.
    if alpha_enabled {
        let mut alpha = serde_yaml::Mapping::new();
        let mut server = serde_yaml::Mapping::new();
        server.insert("BindAddress".into(), "0.0.0.0:4180".into());
        if let Some(extra) = get(&["alphaConfig", "serverConfigData"]).and_then(Yaml::as_mapping) {
            server.extend(extra.clone());
        }
        alpha.insert("server".into(), Yaml::Mapping(server));
        if metrics_enabled {
            let mut m = serde_yaml::Mapping::new();
            m.insert("BindAddress".into(), "0.0.0.0:44180".into());
            if let Some(extra) =
                get(&["alphaConfig", "metricsConfigData"]).and_then(Yaml::as_mapping)
            {
                m.extend(extra.clone());
            }
            alpha.insert("metricsServer".into(), Yaml::Mapping(m));
        }
        if let Some(data) = get(&["alphaConfig", "configData"]).and_then(Yaml::as_mapping) {
            alpha.extend(data.clone());
        }
        if let Some(file) = text(&["alphaConfig", "configFile"]) {
            let extra: Yaml = serde_yaml::from_str(&file)
                .map_err(|err| yaml_error(&input.name(), "alphaConfig.configFile", &err))?;
            if let Some(extra) = extra.as_mapping() {
                alpha.extend(extra.clone());
            }
        }
        if get(&["alphaConfig", "existingConfig"]).is_some() {
            return Err(unreadable("alphaConfig.existingConfig"));
        }
        if get(&["alphaConfig", "existingSecret"]).is_some() {
            return Err(unreadable("alphaConfig.existingSecret"));
        }
        parts.alpha = Some(Yaml::Mapping(alpha));
    } else {
        parts.flags.push("--http-address=0.0.0.0:4180".into());
        if metrics_enabled {
            parts.flags.push("--metrics-address=0.0.0.0:44180".into());
        }
    }

    // extraArgs: a map renders `--key=value` (`--key` for a null value), a list as written.
    match get(&["extraArgs"]) {
        Some(Yaml::Mapping(map)) => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or_default();
                match scalar(v) {
                    Some(v) => parts.flags.push(format!("--{key}={v}")),
                    None => parts.flags.push(format!("--{key}")),
                }
            }
        }
        Some(Yaml::Sequence(items)) => parts.flags.extend(items.iter().filter_map(scalar)),
        _ => {}
    }
    for e in get(&["extraEnv"])
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        let Some(name) = e.get("name").and_then(scalar) else {
            continue;
        };
        parts.env.push((name, e.get("value").and_then(scalar)));
    }

    if get(&["authenticatedEmailsFile", "enabled"]).and_then(Yaml::as_bool) == Some(true) {
        match get(&["authenticatedEmailsFile", "restricted_access"]) {
            Some(Yaml::Sequence(items)) => {
                parts.emails = Some(items.iter().filter_map(scalar).collect())
            }
            Some(Yaml::String(s)) => parts.emails = Some(s.lines().map(String::from).collect()),
            _ => {
                return Err(unreadable(
                    "authenticatedEmailsFile (an existing ConfigMap or Secret)",
                ))
            }
        }
    }
    if get(&["htpasswdFile", "enabled"]).and_then(Yaml::as_bool) == Some(true) {
        report.not_carried(
            "helm htpasswdFile",
            "authgate has no basic-auth users; they sign in through the IdP",
        );
    }

    if get(&["sessionStorage", "type"]).and_then(scalar).as_deref() == Some("redis") {
        parts.env.push((
            "OAUTH2_PROXY_SESSION_STORE_TYPE".into(),
            Some("redis".into()),
        ));
        let redis = |k: &[&str]| {
            let mut p = vec!["sessionStorage", "redis"];
            p.extend_from_slice(k);
            text(&p)
        };
        if get(&["sessionStorage", "redis", "existingSecret"]).is_some() {
            parts.env.push(("OAUTH2_PROXY_REDIS_PASSWORD".into(), None));
        } else if let Some(p) = redis(&["password"]) {
            parts
                .env
                .push(("OAUTH2_PROXY_REDIS_PASSWORD".into(), Some(p)));
        }
        let urls = |k: &str| -> String {
            match get(&["sessionStorage", "redis", k, "connectionUrls"]) {
                Some(Yaml::Sequence(s)) => {
                    s.iter().filter_map(scalar).collect::<Vec<_>>().join(",")
                }
                Some(v) => scalar(v).unwrap_or_default(),
                None => String::new(),
            }
        };
        match redis(&["clientType"]).as_deref() {
            Some("standalone") => {
                if let Some(url) = redis(&["standalone", "connectionUrl"]) {
                    parts
                        .env
                        .push(("OAUTH2_PROXY_REDIS_CONNECTION_URL".into(), Some(url)));
                }
            }
            Some("cluster") => {
                parts
                    .env
                    .push(("OAUTH2_PROXY_REDIS_USE_CLUSTER".into(), Some("true".into())));
                parts.env.push((
                    "OAUTH2_PROXY_REDIS_CLUSTER_CONNECTION_URLS".into(),
                    Some(urls("cluster")),
                ));
            }
            Some("sentinel") => {
                parts.env.push((
                    "OAUTH2_PROXY_REDIS_USE_SENTINEL".into(),
                    Some("true".into()),
                ));
                if let Some(m) = redis(&["sentinel", "masterName"]) {
                    parts
                        .env
                        .push(("OAUTH2_PROXY_REDIS_SENTINEL_MASTER_NAME".into(), Some(m)));
                }
                parts.env.push((
                    "OAUTH2_PROXY_REDIS_SENTINEL_CONNECTION_URLS".into(),
                    Some(urls("sentinel")),
                ));
                if get(&["sessionStorage", "redis", "sentinel", "existingSecret"]).is_some() {
                    parts
                        .env
                        .push(("OAUTH2_PROXY_REDIS_SENTINEL_PASSWORD".into(), None));
                } else if let Some(p) = redis(&["sentinel", "password"]) {
                    parts
                        .env
                        .push(("OAUTH2_PROXY_REDIS_SENTINEL_PASSWORD".into(), Some(p)));
                }
            }
            _ => {}
        }
    }

    // Everything else the values say: reported, never silently dropped.
    let known_top = [
        "config",
        "alphaConfig",
        "extraArgs",
        "extraEnv",
        "authenticatedEmailsFile",
        "htpasswdFile",
        "sessionStorage",
        "proxyVarsAsSecrets",
        "metrics",
    ];
    for (k, _) in values.as_mapping().into_iter().flatten() {
        let key = k.as_str().unwrap_or_default();
        if !known_top.contains(&key) && !DEPLOYMENT_KEYS.contains(&key) {
            report.not_carried(
                &format!("helm {key}"),
                "not a value of the oauth2-proxy chart",
            );
        }
    }
    let known_config = [
        "clientID",
        "clientSecret",
        "cookieSecret",
        "cookieName",
        "configFile",
        "existingConfig",
        "existingSecret",
        "emailDomains",
        "upstreams",
        "google",
        "requiredSecretKeys",
        "annotations",
        "forceLegacyConfig",
    ];
    for (k, _) in get(&["config"])
        .and_then(Yaml::as_mapping)
        .into_iter()
        .flatten()
    {
        let key = k.as_str().unwrap_or_default();
        if !known_config.contains(&key) {
            report.not_carried(
                &format!("helm config.{key}"),
                "not a value of the oauth2-proxy chart",
            );
        }
    }
    Ok(parts)
}

/// A YAML parse error naming the file and position.
pub fn yaml_error(file: &str, what: &str, err: &serde_yaml::Error) -> MigrateError {
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    MigrateError::Parse {
        file: if what.is_empty() {
            file.to_string()
        } else {
            format!("{file} ({what})")
        },
        line,
        column,
        message: err.to_string(),
    }
}

/// Applies the chart's variables to `options` (after the real environment:
/// both are `Source::Env`, the process environment is read first and wins).
///
/// # Errors
/// [`Refused`] for a value oauth2-proxy refuses.
pub fn apply_helm_env(
    env: &[(String, Option<String>)],
    options: &mut Options,
    report: &mut Report,
) -> Result<(), Refused> {
    for (name, value) in env {
        let Some(spec) = by_env(name) else {
            if name.starts_with("OAUTH2_PROXY_") {
                report.not_carried(
                    &format!("helm extraEnv {name}"),
                    "names no oauth2-proxy option (oauth2-proxy ignores it too)",
                );
            }
            continue;
        };
        if options
            .get(spec.flag)
            .is_some_and(|s| s.source >= Source::Env)
        {
            continue;
        }
        match value {
            Some(v) => options.set(
                spec,
                Raw::Text(v.clone()),
                Source::Env,
                &format!("helm {name}"),
                None,
            )?,
            // Set at run time from a Secret: refer to the variable.
            None => options.set(
                spec,
                Raw::Text(format!("${{{name}}}")),
                Source::Env,
                &format!("helm {name}"),
                Some(name.clone()),
            )?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_spelling() {
        let mut o = Options::default();
        let mut r = Report::default();
        let args: Vec<String> = [
            "--cookie-name",
            "n",
            "-cookie-secure=false",
            "--skip-jwt-bearer-tokens",
            "--email-domain=a.com",
        ]
        .map(String::from)
        .to_vec();
        read_flags(&args, "flags", &mut o, &mut r).unwrap();
        assert_eq!(o.text("cookie-name"), Some("n"));
        assert_eq!(o.flag("cookie-secure"), Some(false));
        assert_eq!(o.flag("skip-jwt-bearer-tokens"), Some(true));
        assert_eq!(o.list("email-domain").unwrap(), ["a.com"]);
        let err = read_flags(&["--no-such".to_string()], "flags", &mut o, &mut r).unwrap_err();
        assert!(err.0.contains("unknown flag: --no-such"), "{err}");
    }

    #[test]
    fn toml_errors_name_the_line_and_column() {
        let input = Input::Config("p.cfg".into());
        let mut o = Options::default();
        let err =
            read_toml("cookie_name = \"a\"\nemail_domains = [\n", &input, &mut o).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("p.cfg:"), "{text}");
        let err = read_toml("upstream = \"x\"", &input, &mut o).unwrap_err();
        assert!(err.to_string().contains("invalid keys: upstream"), "{err}");
    }

    #[test]
    fn line_and_column_are_one_based() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
