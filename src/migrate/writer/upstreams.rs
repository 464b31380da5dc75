//! The `upstreams` and `headers` sections: where requests go (`--upstream`,
//! the alpha config's upstreams, `static://200` as ext_authz only) and which
//! identity headers and tokens they carry (`set-xauthrequest`,
//! `pass-*`, alphaConfig `injectRequestHeaders`/`injectResponseHeaders`).

use serde_yaml::{Mapping, Value as Yaml};

use super::super::alpha::AlphaParts;
use super::{put, Writer};

/// `--upstream`s or the alpha config's upstreams; true when the only one is
/// `static://200` (ext_authz only).
pub(super) fn upstreams(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> (Vec<Yaml>, bool) {
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

/// Builds `headers`: the identity headers and the tokens passed upstream.
pub(super) fn headers(w: &mut Writer<'_>, alpha: Option<&AlphaParts>) -> Mapping {
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
