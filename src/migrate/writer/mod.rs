//! The oauth2-proxy option model into an authgate config: one key per
//! option where authgate has one, oauth2-proxy's defaults written out where
//! authgate's differ, secrets as `${VAR}`/`_file` references unless they
//! were given in clear, and a report line for everything else. Access
//! restrictions it cannot express make the run fail ([`Report::restriction`]).
//! `verify::finish` then checks the text with authgate's own loader.
//!
//! This file holds the walk over the sections and the `server`,
//! `redirect` and `telemetry` ones; each other section is its own file.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value as Yaml};

use super::alpha::AlphaParts;
use super::options::{Options, Setting};
use super::{MigrateError, Report};

mod authorization;
mod provider;
mod session;
mod upstreams;

use provider::{provider, roles_policy};
use session::{cookie, session};
use upstreams::{headers, upstreams};

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
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let mut tls = Mapping::new();
            put(&mut tls, "cert_file", cert);
            put(&mut tls, "key_file", key);
            put(&mut server, "tls", Yaml::Mapping(tls));
            w.r.carried(
                "--tls-cert-file",
                "server.tls: authgate serves TLS on server.listen, not on a second https-address",
            );
            w.get("https-address");
        }
        // One without the other serves no TLS: say so instead of dropping it.
        (Some(_), None) => w.not_carried(
            "tls-cert-file",
            "needs --tls-key-file too; server.tls takes both",
        ),
        (None, Some(_)) => w.not_carried(
            "tls-key-file",
            "needs --tls-cert-file too; server.tls takes both",
        ),
        (None, None) => w.not_carried(
            "https-address",
            "oauth2-proxy serves it only with --tls-cert-file and --tls-key-file; authgate serves TLS on server.listen",
        ),
    }
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
    let authz = authorization::authorization(&mut w, emails, groups)?;
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
