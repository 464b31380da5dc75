//! The `cookie` and `session` sections: the session cookie's name,
//! secret, scope, lifetime and flags, and the store (cookie or Redis:
//! standalone, Sentinel, Cluster).

use serde_yaml::{Mapping, Value as Yaml};

use super::super::options::{authgate_duration, go_duration};
use super::{put, seq, Writer};

/// Builds `cookie` from the `cookie-*` options.
pub(super) fn cookie(w: &mut Writer<'_>) -> Mapping {
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

/// Builds `session` from `session-store-type` and the `redis-*` options.
pub(super) fn session(w: &mut Writer<'_>) -> Mapping {
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
            (None, super::super::options::Value::Text(t)) => {
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
        "authgate verifies Redis TLS against the web PKI roots, or the CAs in the SSL_CERT_FILE environment variable",
    );
    w.not_carried(
        "redis-connection-idle-timeout",
        "authgate manages its Redis connections itself",
    );
    w.get("redis-use-sentinel");
    s
}
