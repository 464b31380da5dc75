//! Configuration: the YAML file (`file`), the validated model (`model`) and
//! the problems found on the way (`error`).
//!
//! Loading runs once at start-up (and for `authgate check`), in this order:
//! parse the YAML into a tree, expand `${VAR}` in its strings, deserialize the
//! tree into the file DTO, validate it into the model, and, last, resolve the
//! upstream hosts (the only network I/O). Every step collects problems
//! instead of stopping, so the user sees them all at once, each named by its
//! full key path.

mod duration;
mod env;
mod error;
mod file;
pub mod model;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ipnet::IpNet;
use regex::Regex;
use serde_path_to_error::Segment;
use serde_yaml::Value;
use url::Url;

pub use duration::{parse_duration, DurationError};
pub use env::EnvLookup;
pub use error::{ConfigError, Problem};
pub use model::*;

use file::{
    AuthorizationFile, CookieFile, FileConfig, HeadersFile, ProviderFile, RedirectFile, ServerFile,
    SessionFile, UpstreamFile,
};

/// Resolves an upstream host and port to addresses (`ToSocketAddrs` in
/// production; a closure in tests so they need no DNS).
pub type Resolver<'a> = &'a dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

// === Entry points ===

/// Loads and validates the file at `path`, reading `${VAR}`s from the process
/// environment and resolving upstream hosts with the system resolver.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, &process_env)
}

/// [`load`] with an injectable environment (tests, or a caller that has
/// already captured the environment).
pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let yaml = std::fs::read_to_string(path).map_err(|err| {
        ConfigError(vec![Problem::new(
            path.display().to_string(),
            format!("cannot read the configuration file: {err}"),
        )])
    })?;
    load_str_with_env(&yaml, env)
}

/// Loads configuration text, with `${VAR}`s from the process environment.
pub fn load_str(yaml: &str) -> Result<Config, ConfigError> {
    load_str_with_env(yaml, &process_env)
}

/// Loads configuration text with an injectable environment.
pub fn load_str_with_env(yaml: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    load_str_with(yaml, env, &system_resolver)
}

/// The whole pipeline with both the environment and the upstream resolver
/// injected.
pub fn load_str_with(
    yaml: &str,
    env: EnvLookup<'_>,
    resolve: Resolver<'_>,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut tree = parse_tree(yaml).map_err(|problem| ConfigError(vec![problem]))?;

    // A key whose value is already known to be wrong gets no second,
    // derived complaint (an unexpanded `${X}` is not also "an invalid URL").
    env::expand_tree(&mut tree, env, &mut problems);
    let mut settled: Vec<String> = problems.iter().map(|p| p.key.clone()).collect();
    stringify_scalars(&mut tree);

    let Some(file) = deserialize_collecting(tree, &mut problems, &mut settled) else {
        return Err(ConfigError(problems));
    };

    let mut validator = Validator::default();
    let staged = validator.validate(file);
    // DNS last: everything that needs no network has been checked already.
    let upstreams = validator.resolve_upstreams(staged.upstreams, resolve);
    problems.extend(
        validator
            .problems
            .into_iter()
            .filter(|p| !is_settled(&p.key, &settled)),
    );

    match (problems.is_empty(), staged.parts) {
        (true, Some(parts)) => Ok(Config {
            server: parts.server,
            provider: parts.provider,
            cookie: parts.cookie,
            session: parts.session,
            authorization: parts.authorization,
            redirect: parts.redirect,
            upstreams,
            headers: parts.headers,
        }),
        (true, None) => Err(ConfigError(vec![Problem::new(
            "(root)",
            "invalid configuration",
        )])),
        (false, _) => Err(ConfigError(problems)),
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn system_resolver(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

// === From text to DTO ===

/// Parses the YAML and normalises the tree: merge keys applied, `key:` with
/// no value treated as absent (so the default applies), root must be a map.
fn parse_tree(yaml: &str) -> Result<Value, Problem> {
    let mut tree: Value =
        serde_yaml::from_str(yaml).map_err(|err| Problem::new("(yaml)", err.to_string()))?;
    tree.apply_merge()
        .map_err(|err| Problem::new("(yaml)", err.to_string()))?;
    match tree {
        Value::Null => Ok(Value::Mapping(Default::default())),
        Value::Mapping(_) => {
            drop_nulls(&mut tree);
            Ok(tree)
        }
        _ => Err(Problem::new(
            "(root)",
            "the configuration must be a YAML mapping of sections",
        )),
    }
}

fn drop_nulls(value: &mut Value) {
    match value {
        Value::Mapping(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Sequence(items) => items.iter_mut().for_each(drop_nulls),
        Value::Tagged(tagged) => drop_nulls(&mut tagged.value),
        _ => {}
    }
}

/// Numbers and booleans become strings, map keys included, so a text field
/// accepts `client_id: 12345`; typed fields parse text anyway because
/// `${VAR}` expansion only ever yields strings.
fn stringify_scalars(value: &mut Value) {
    match value {
        Value::Bool(b) => *value = Value::String(b.to_string()),
        Value::Number(n) => *value = Value::String(n.to_string()),
        Value::Sequence(items) => items.iter_mut().for_each(stringify_scalars),
        Value::Mapping(map) => {
            let entries = std::mem::take(map);
            for (mut key, mut item) in entries {
                stringify_scalars(&mut key);
                stringify_scalars(&mut item);
                map.insert(key, item);
            }
        }
        Value::Tagged(tagged) => stringify_scalars(&mut tagged.value),
        Value::Null | Value::String(_) => {}
    }
}

/// serde stops at the first error; to report them all, each failing key is
/// recorded, removed from the tree (so its default applies) and the tree is
/// deserialized again. Removed keys are `settled` so validation stays quiet
/// about them.
fn deserialize_collecting(
    mut tree: Value,
    problems: &mut Vec<Problem>,
    settled: &mut Vec<String>,
) -> Option<FileConfig> {
    const MAX_ROUNDS: usize = 200;
    for _ in 0..MAX_ROUNDS {
        let err = match serde_path_to_error::deserialize::<_, FileConfig>(&tree) {
            Ok(file) => return Some(file),
            Err(err) => err,
        };
        let segments: Vec<Segment> = err.path().iter().cloned().collect();
        let key = segments_to_key(&segments);
        let message = err.into_inner().to_string();
        let unknown = message.starts_with("unknown field");
        let shown = if unknown {
            "unknown key".to_string()
        } else if key.contains("secret") {
            // serde echoes the offending value; never print a secret.
            "invalid type: expected a string".to_string()
        } else {
            message
        };
        if !is_settled(&key, settled) {
            problems.push(Problem::new(key.clone(), shown));
        }

        // Which key to remove: the failing one, or, inside a list, the whole
        // list (removing one item would shift the indices of the others).
        let cut = match segments.last() {
            Some(Segment::Seq { .. }) if !unknown => {
                let mut parent = segments.clone();
                while matches!(parent.last(), Some(Segment::Seq { .. })) {
                    parent.pop();
                }
                parent
            }
            _ => segments,
        };
        settled.push(segments_to_key(&cut));
        if !remove_at(&mut tree, &cut) {
            return None;
        }
    }
    None
}

fn segments_to_key(segments: &[Segment]) -> String {
    let mut key = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Unknown => key.push_str(if key.is_empty() { "?" } else { ".?" }),
        }
    }
    if key.is_empty() {
        "(root)".to_string()
    } else {
        key
    }
}

/// Removes the map entry that `path` names; false when it cannot (the path
/// ends in a list index or an unknown segment), so the caller gives up.
fn remove_at(tree: &mut Value, path: &[Segment]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for segment in parents {
        let next = match (segment, node) {
            (Segment::Map { key }, Value::Mapping(map)) => map.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    match (last, node) {
        (Segment::Map { key }, Value::Mapping(map)) => map.remove(key.as_str()).is_some(),
        _ => false,
    }
}

/// True when `key` is `settled` or lies under it (`a.b` settles `a.b.c`, `a.b[0]`).
fn is_settled(key: &str, settled: &[String]) -> bool {
    settled.iter().any(|s| {
        key == s
            || key
                .strip_prefix(s.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

// === Validation: DTO -> model ===

/// Everything but the upstreams' addresses, which need DNS.
struct Staged {
    parts: Option<Parts>,
    upstreams: Vec<PendingUpstream>,
}

struct Parts {
    server: Server,
    provider: Provider,
    cookie: Cookie,
    session: Session,
    authorization: Authorization,
    redirect: Redirect,
    headers: Headers,
}

/// An upstream that passed the static checks and awaits resolution.
struct PendingUpstream {
    key: String,
    path: String,
    url: Url,
    tls: bool,
    host: Option<String>,
}

/// Collects problems while converting; each conversion returns `None` after
/// recording why, so one bad key never hides the next.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }

    fn validate(&mut self, file: FileConfig) -> Staged {
        let server = self.server(file.server);
        let provider = self.provider(file.provider);
        let cookie = self.cookie(file.cookie);
        let session = self.session(file.session);
        let authorization = self.authorization(file.authorization);
        let redirect = self.redirect(file.redirect);
        // An ext_authz-only deployment forwards nothing itself: Envoy does.
        let ext_authz_only = server
            .as_ref()
            .is_some_and(|s| s.ext_authz_http.is_some() || s.ext_authz_grpc.is_some());
        let upstreams = self.upstreams(file.upstreams, ext_authz_only);
        let headers = self.headers(file.headers);
        let parts = match (
            server,
            provider,
            cookie,
            session,
            authorization,
            redirect,
            headers,
        ) {
            (
                Some(server),
                Some(provider),
                Some(cookie),
                Some(session),
                Some(authorization),
                Some(redirect),
                Some(headers),
            ) => Some(Parts {
                server,
                provider,
                cookie,
                session,
                authorization,
                redirect,
                headers,
            }),
            _ => None,
        };
        Staged { parts, upstreams }
    }

    // === server ===

    fn server(&mut self, s: ServerFile) -> Option<Server> {
        let listen = self.socket_addr("server.listen", &s.listen);
        let ext_authz_http = self.optional_socket_addr("server.ext_authz_http", &s.ext_authz_http);
        let ext_authz_grpc = self.optional_socket_addr("server.ext_authz_grpc", &s.ext_authz_grpc);
        let metrics = self.optional_socket_addr("server.metrics", &s.metrics);

        let mut bound: Vec<(&str, SocketAddr)> = Vec::new();
        for (key, addr) in [
            ("server.listen", listen),
            ("server.ext_authz_http", ext_authz_http.flatten()),
            ("server.ext_authz_grpc", ext_authz_grpc.flatten()),
            ("server.metrics", metrics.flatten()),
        ] {
            let Some(addr) = addr else { continue };
            if let Some((other, _)) = bound.iter().find(|(_, a)| *a == addr && addr.port() != 0) {
                let message = format!("same address as {other}");
                self.problem(key, message);
            }
            bound.push((key, addr));
        }

        let prefix_ok =
            s.ext_authz_path_prefix.is_empty() || s.ext_authz_path_prefix.starts_with('/');
        if !prefix_ok {
            self.problem(
                "server.ext_authz_path_prefix",
                "must start with / (or be empty)",
            );
        }

        let trusted_proxies: Vec<Option<IpNet>> = s
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| self.cidr(&format!("server.trusted_proxies[{i}]"), text))
            .collect();

        let tls = match s.tls {
            None => Some(None),
            Some(tls) => {
                let cert = self.required_file("server.tls.cert_file", &tls.cert_file);
                let key = self.required_file("server.tls.key_file", &tls.key_file);
                match (cert, key) {
                    (Some(cert_file), Some(key_file)) => Some(Some(Tls {
                        cert_file,
                        key_file,
                    })),
                    _ => None,
                }
            }
        };

        let threads = match s.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let shutdown_grace = self.duration("server.shutdown_grace", &s.shutdown_grace.0);

        let trusted_proxies = trusted_proxies.into_iter().collect::<Option<Vec<_>>>();
        Some(Server {
            listen: listen?,
            ext_authz_http: ext_authz_http?,
            ext_authz_grpc: ext_authz_grpc?,
            metrics: metrics?,
            ext_authz_path_prefix: prefix_ok.then_some(s.ext_authz_path_prefix)?,
            trusted_proxies: trusted_proxies?,
            tls: tls?,
            threads,
            shutdown_grace: shutdown_grace?,
        })
    }

    // === provider ===

    fn provider(&mut self, p: ProviderFile) -> Option<Provider> {
        let issuer_url = self.required_url("provider.issuer_url", &p.issuer_url);
        if let Some(url) = &issuer_url {
            if url.query().is_some() || url.fragment().is_some() {
                self.problem("provider.issuer_url", "must not have a query or fragment");
            }
        }
        let client_id = self.required_text("provider.client_id", &p.client_id);
        let client_secret = self.secret_twin(
            "provider.client_secret",
            &p.client_secret,
            "provider.client_secret_file",
            &p.client_secret_file,
        );

        let scopes = self.text_list("provider.scopes", &p.scopes, false);
        if let Some(scopes) = &scopes {
            if !scopes.iter().any(|s| s == "openid") {
                self.problem("provider.scopes", "must include openid");
            }
        }
        let redirect_url = self.optional_url("provider.redirect_url", &p.redirect_url);

        let endpoint_keys = [
            ("provider.authorization_endpoint", &p.authorization_endpoint),
            ("provider.token_endpoint", &p.token_endpoint),
            ("provider.userinfo_endpoint", &p.userinfo_endpoint),
            ("provider.jwks_uri", &p.jwks_uri),
        ];
        let end_session =
            self.optional_url("provider.end_session_endpoint", &p.end_session_endpoint);
        let endpoints = if p.discovery {
            // Given by hand but unused: still worth a syntax check.
            for (key, text) in endpoint_keys {
                self.optional_url(key, text);
            }
            Some(None)
        } else {
            let [auth, token, userinfo, jwks] = endpoint_keys.map(|(key, text)| {
                if text.trim().is_empty() {
                    self.problem(key, "is required when provider.discovery is false");
                    None
                } else {
                    self.required_url(key, text)
                }
            });
            match (auth, token, userinfo, jwks, end_session.clone()) {
                (
                    Some(authorization_endpoint),
                    Some(token_endpoint),
                    Some(userinfo_endpoint),
                    Some(jwks_uri),
                    Some(end_session_endpoint),
                ) => Some(Some(Endpoints {
                    authorization_endpoint,
                    token_endpoint,
                    userinfo_endpoint,
                    jwks_uri,
                    end_session_endpoint,
                })),
                _ => None,
            }
        };

        let audiences = self.text_list("provider.audiences", &p.audiences, false);
        let claims = Claims {
            user: self.claim_path("provider.claims.user", &p.claims.user),
            email: self.claim_path("provider.claims.email", &p.claims.email),
            groups: self.claim_path("provider.claims.groups", &p.claims.groups),
            preferred_username: self.claim_path(
                "provider.claims.preferred_username",
                &p.claims.preferred_username,
            ),
        };
        let ca_file = self.optional_file("provider.ca_file", &p.ca_file);

        Some(Provider {
            issuer_url: issuer_url?,
            client_id: client_id?,
            client_secret: client_secret?,
            scopes: scopes?,
            redirect_url: redirect_url?,
            endpoints: endpoints?,
            end_session_endpoint: end_session?,
            pkce: p.pkce,
            audiences: audiences?,
            claims,
            allow_unverified_email: p.allow_unverified_email,
            ca_file: ca_file?,
        })
    }

    fn claim_path(&mut self, key: &str, text: &str) -> ClaimPath {
        let parts: Vec<String> = text.trim().split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            self.problem(
                key,
                "must be a claim name or dotted path such as realm_access.roles",
            );
        }
        ClaimPath(parts)
    }

    // === cookie ===

    fn cookie(&mut self, c: CookieFile) -> Option<Cookie> {
        let name_ok = self.cookie_name(&c);
        let secret = self
            .secret_twin(
                "cookie.secret",
                &c.secret,
                "cookie.secret_file",
                &c.secret_file,
            )
            .and_then(|text| {
                if text.is_empty() {
                    self.problem(
                        "cookie.secret",
                        "must not be empty: set cookie.secret or cookie.secret_file \
                         (`authgate secret` prints one)",
                    );
                    return None;
                }
                decode_cookie_secret(&text)
                    .map_err(|got| {
                        self.problem(
                            "cookie.secret",
                            format!("must decode to 16, 24 or 32 bytes, got {got}"),
                        )
                    })
                    .ok()
            });

        let domains = self.text_list("cookie.domains", &c.domains, true);
        if !c.path.starts_with('/') {
            self.problem("cookie.path", "must start with /");
        }
        let same_site = match c.same_site.trim().to_ascii_lowercase().as_str() {
            "lax" => Some(SameSite::Lax),
            "strict" => Some(SameSite::Strict),
            "none" => {
                if !c.secure {
                    self.problem(
                        "cookie.same_site",
                        "none requires cookie.secure: true (browsers drop the cookie otherwise)",
                    );
                }
                Some(SameSite::None)
            }
            _ => {
                self.problem("cookie.same_site", "must be lax, strict or none");
                None
            }
        };

        let expire = self.duration("cookie.expire", &c.expire.0);
        if expire == Some(Duration::ZERO) {
            self.problem("cookie.expire", "must be greater than 0");
        }
        let refresh = self
            .duration("cookie.refresh", &c.refresh.0)
            .map(|d| (!d.is_zero()).then_some(d));
        if let (Some(Some(refresh)), Some(expire)) = (refresh, expire) {
            if refresh >= expire {
                self.problem("cookie.refresh", "must be shorter than cookie.expire");
            }
        }

        if !name_ok || !c.path.starts_with('/') || expire == Some(Duration::ZERO) {
            return None;
        }
        Some(Cookie {
            name: c.name,
            secret: secret?,
            domains: domains?,
            path: c.path,
            secure: c.secure,
            http_only: c.http_only,
            same_site: same_site?,
            expire: expire?,
            refresh: refresh?,
        })
    }

    /// RFC 6265 cookie-name is an RFC 7230 token; browsers also enforce the
    /// `__Host-` / `__Secure-` prefix rules, so a violation would silently
    /// lose every session.
    fn cookie_name(&mut self, c: &CookieFile) -> bool {
        let name = c.name.as_str();
        if name.is_empty() {
            self.problem("cookie.name", "must not be empty");
            return false;
        }
        if !name.bytes().all(is_tchar) {
            self.problem(
                "cookie.name",
                "must be a cookie name token (letters, digits and !#$%&'*+-.^_`|~)",
            );
            return false;
        }
        let mut ok = true;
        if (name.starts_with("__Secure-") || name.starts_with("__Host-")) && !c.secure {
            self.problem(
                "cookie.name",
                "the __Secure-/__Host- prefix requires cookie.secure: true",
            );
            ok = false;
        }
        if name.starts_with("__Host-") && (c.path != "/" || !c.domains.is_empty()) {
            self.problem(
                "cookie.name",
                "the __Host- prefix requires cookie.path: / and no cookie.domains",
            );
            ok = false;
        }
        ok
    }

    // === session ===

    fn session(&mut self, s: SessionFile) -> Option<Session> {
        match s.store.trim().to_ascii_lowercase().as_str() {
            // The redis section is accepted but not checked: it is unused.
            "cookie" => Some(Session::Cookie),
            "redis" => self
                .redis_url("session.redis.url", &s.redis.url)
                .map(|url| Session::Redis(Redis { url })),
            _ => {
                self.problem("session.store", "must be cookie or redis");
                None
            }
        }
    }

    fn redis_url(&mut self, key: &str, text: &str) -> Option<String> {
        const SCHEMES: [&str; 8] = [
            "redis",
            "rediss",
            "redis+sentinel",
            "rediss+sentinel",
            "redis+cluster",
            "rediss+cluster",
            "redis+unix",
            "unix",
        ];
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty when session.store is redis");
            return None;
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            self.problem(key, "must be a URL such as redis://host:6379/0");
            return None;
        };
        let scheme = scheme.to_ascii_lowercase();
        if !SCHEMES.contains(&scheme.as_str()) {
            self.problem(key, format!("scheme must be one of {}", SCHEMES.join(", ")));
            return None;
        }
        if scheme.contains("+sentinel") || scheme.contains("+cluster") {
            // These list several comma-separated hosts, which `Url` rejects.
            if rest.is_empty() || rest.starts_with('/') {
                self.problem(key, "must name at least one host");
                return None;
            }
            return Some(text.to_string());
        }
        match Url::parse(text) {
            Err(err) => {
                self.problem(key, format!("invalid URL: {err}"));
                None
            }
            Ok(url) if !scheme.contains("unix") && url.host_str().is_none_or(str::is_empty) => {
                self.problem(key, "must name a host");
                None
            }
            Ok(_) => Some(text.to_string()),
        }
    }

    // === authorization, redirect ===

    fn authorization(&mut self, a: AuthorizationFile) -> Option<Authorization> {
        let email_domains = self.text_list("authorization.email_domains", &a.email_domains, true);
        for (i, domain) in a.email_domains.iter().enumerate() {
            if domain.contains('@') {
                self.problem(
                    format!("authorization.email_domains[{i}]"),
                    "must be a domain without @ (e.g. example.com)",
                );
            }
        }
        let allowed_emails =
            self.text_list("authorization.allowed_emails", &a.allowed_emails, true);
        for (i, email) in a.allowed_emails.iter().enumerate() {
            let well_formed = email.trim().split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            });
            if !well_formed {
                self.problem(
                    format!("authorization.allowed_emails[{i}]"),
                    "must be an address with exactly one @",
                );
            }
        }
        let allowed_groups =
            self.text_list("authorization.allowed_groups", &a.allowed_groups, false);

        let skip_auth_routes: Option<Vec<Route>> = a
            .skip_auth_routes
            .iter()
            .enumerate()
            .map(|(i, text)| self.route(&format!("authorization.skip_auth_routes[{i}]"), text))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        let api_routes: Option<Vec<Regex>> = a
            .api_routes
            .iter()
            .enumerate()
            .map(|(i, text)| self.path_regex(&format!("authorization.api_routes[{i}]"), text))
            .collect::<Vec<_>>()
            .into_iter()
            .collect();

        let extra_jwt_issuers: Option<Vec<ExtraIssuer>> = a
            .extra_jwt_issuers
            .iter()
            .enumerate()
            .map(|(i, issuer)| {
                let key = format!("authorization.extra_jwt_issuers[{i}]");
                let url = self.required_url(&format!("{key}.issuer_url"), &issuer.issuer_url);
                let audience = self.required_text(&format!("{key}.audience"), &issuer.audience);
                Some(ExtraIssuer {
                    issuer_url: url?,
                    audience: audience?,
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect();

        if self
            .problems
            .iter()
            .any(|p| p.key.starts_with("authorization."))
        {
            return None;
        }
        Some(Authorization {
            email_domains: email_domains?,
            allowed_emails: allowed_emails?,
            allowed_groups: allowed_groups?,
            skip_auth_routes: skip_auth_routes?,
            api_routes: api_routes?,
            skip_preflight: a.skip_preflight,
            bearer_tokens: a.bearer_tokens,
            extra_jwt_issuers: extra_jwt_issuers?,
        })
    }

    /// `REGEX` or `METHOD=REGEX`; the prefix is a method only when it is
    /// letters alone, so a regex that contains `=` stays whole.
    fn route(&mut self, key: &str, text: &str) -> Option<Route> {
        let (method, pattern) = match text.split_once('=') {
            Some((method, pattern))
                if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) =>
            {
                (Some(method.to_ascii_uppercase()), pattern)
            }
            _ => (None, text),
        };
        let path = self.path_regex(key, pattern)?;
        Some(Route { method, path })
    }

    fn path_regex(&mut self, key: &str, pattern: &str) -> Option<Regex> {
        if pattern.is_empty() {
            self.problem(key, "regex must not be empty (it would match every path)");
            return None;
        }
        Regex::new(pattern)
            .map_err(|err| self.problem(key, format!("invalid regex: {}", regex_error_line(&err))))
            .ok()
    }

    fn redirect(&mut self, r: RedirectFile) -> Option<Redirect> {
        let allowed_domains = self.text_list("redirect.allowed_domains", &r.allowed_domains, true);
        let mut ok = true;
        for (i, domain) in r.allowed_domains.iter().enumerate() {
            if domain.contains('/') {
                self.problem(
                    format!("redirect.allowed_domains[{i}]"),
                    "must be a host name (e.g. app.example.com or .example.com), not a URL",
                );
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        Some(Redirect {
            allowed_domains: allowed_domains?,
        })
    }

    // === upstreams ===

    fn upstreams(&mut self, list: Vec<UpstreamFile>, optional: bool) -> Vec<PendingUpstream> {
        if list.is_empty() && !optional {
            self.problem(
                "upstreams",
                "must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)",
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pending = Vec::new();
        for (i, upstream) in list.into_iter().enumerate() {
            let key = format!("upstreams[{i}]");
            let path_ok = if upstream.path.is_empty() {
                self.problem(
                    format!("{key}.path"),
                    "must not be empty (use / for everything)",
                );
                false
            } else if !upstream.path.starts_with('/') {
                self.problem(format!("{key}.path"), "must start with /");
                false
            } else if let Some(first) = seen.get(&upstream.path) {
                self.problem(
                    format!("{key}.path"),
                    format!("same path as upstreams[{first}]"),
                );
                false
            } else {
                seen.insert(upstream.path.clone(), i);
                true
            };

            let url_key = format!("{key}.url");
            let url = self.required_url(&url_key, &upstream.url);
            if let Some(url) = &url {
                if url.host_str().is_none_or(str::is_empty) {
                    self.problem(&url_key, "must name a host");
                }
            }

            let host = upstream.host.trim();
            let host_ok = host.is_empty()
                || (host.parse::<http::uri::Authority>().is_ok()
                    && http::HeaderValue::from_str(host).is_ok());
            if !host_ok {
                self.problem(
                    format!("{key}.host"),
                    "must be a host name with an optional :port",
                );
            }

            if let (true, true, Some(url)) = (path_ok, host_ok, url) {
                pending.push(PendingUpstream {
                    tls: url.scheme() == "https",
                    key,
                    path: upstream.path,
                    url,
                    host: (!host.is_empty()).then(|| host.to_string()),
                });
            }
        }
        pending
    }

    /// Resolves each upstream's host once; Pingora's peers need an address.
    fn resolve_upstreams(
        &mut self,
        pending: Vec<PendingUpstream>,
        resolve: Resolver<'_>,
    ) -> Vec<Upstream> {
        let mut upstreams = Vec::with_capacity(pending.len());
        for p in pending {
            let url_key = format!("{}.url", p.key);
            let Some(port) = p.url.port_or_known_default() else {
                self.problem(url_key, "needs a port");
                continue;
            };
            let addr = match p.url.host() {
                Some(url::Host::Ipv4(ip)) => Some(SocketAddr::new(IpAddr::V4(ip), port)),
                Some(url::Host::Ipv6(ip)) => Some(SocketAddr::new(IpAddr::V6(ip), port)),
                Some(url::Host::Domain(host)) => match resolve(host, port) {
                    Ok(addrs) => match addrs.first() {
                        Some(addr) => Some(*addr),
                        None => {
                            self.problem(
                                &url_key,
                                format!("cannot resolve host {host}: no addresses"),
                            );
                            None
                        }
                    },
                    Err(err) => {
                        self.problem(&url_key, format!("cannot resolve host {host}: {err}"));
                        None
                    }
                },
                None => {
                    self.problem(&url_key, "must name a host");
                    None
                }
            };
            if let Some(addr) = addr {
                upstreams.push(Upstream {
                    path: p.path,
                    url: p.url,
                    addr,
                    tls: p.tls,
                    host: p.host,
                });
            }
        }
        upstreams
    }

    // === headers ===

    fn headers(&mut self, h: HeadersFile) -> Option<Headers> {
        /// Names whose removal from client requests (which every identity
        /// header gets) would break the request or authgate itself.
        const RESERVED: [&str; 13] = [
            "host",
            "cookie",
            "set-cookie",
            "authorization",
            "x-forwarded-access-token",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
        ];
        let mut identity = Vec::with_capacity(h.identity.len());
        let mut ok = true;
        for (i, header) in h.identity.iter().enumerate() {
            let key = format!("headers.identity[{i}]");
            let name = match http::HeaderName::from_bytes(header.name.trim().as_bytes()) {
                Ok(name) if RESERVED.contains(&name.as_str()) => {
                    self.problem(
                        format!("{key}.name"),
                        format!("{name} cannot carry identity"),
                    );
                    None
                }
                Ok(name) => Some(name),
                Err(_) => {
                    self.problem(format!("{key}.name"), "must be a valid HTTP header name");
                    None
                }
            };
            let claim = match header.claim.trim() {
                "user" => Some(IdentityClaim::User),
                "email" => Some(IdentityClaim::Email),
                "preferred_username" => Some(IdentityClaim::PreferredUsername),
                "groups" => Some(IdentityClaim::Groups),
                _ => {
                    self.problem(
                        format!("{key}.claim"),
                        "must be user, email, preferred_username or groups",
                    );
                    None
                }
            };
            match (name, claim) {
                (Some(name), Some(claim)) => identity.push(IdentityHeader { name, claim }),
                _ => ok = false,
            }
        }
        ok.then_some(Headers {
            pass_authorization: h.pass_authorization,
            pass_access_token: h.pass_access_token,
            identity,
        })
    }

    // === Scalar helpers ===

    fn required_text(&mut self, key: &str, text: &str) -> Option<String> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        Some(text.to_string())
    }

    /// A list of non-empty strings, trimmed, optionally lower-cased.
    fn text_list(&mut self, key: &str, items: &[String], lowercase: bool) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item = item.trim();
            if item.is_empty() {
                self.problem(format!("{key}[{i}]"), "must not be empty");
                ok = false;
            } else if lowercase {
                out.push(item.to_ascii_lowercase());
            } else {
                out.push(item.to_string());
            }
        }
        ok.then_some(out)
    }

    /// An absolute http(s) URL (plain http is allowed for local and test IdPs).
    fn required_url(&mut self, key: &str, text: &str) -> Option<Url> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        match Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(_) => {
                self.problem(key, "scheme must be http or https");
                None
            }
            Err(err) => {
                self.problem(key, format!("invalid URL: {err}"));
                None
            }
        }
    }

    /// Outer `None`: invalid (recorded); `Some(None)`: not set.
    fn optional_url(&mut self, key: &str, text: &str) -> Option<Option<Url>> {
        if text.trim().is_empty() {
            return Some(None);
        }
        self.required_url(key, text).map(Some)
    }

    fn socket_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        let text = text.trim();
        if text.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        text.parse()
            .map_err(|_| self.problem(key, "must be IP:PORT, e.g. 0.0.0.0:4180 or [::]:4180"))
            .ok()
    }

    fn optional_socket_addr(&mut self, key: &str, text: &str) -> Option<Option<SocketAddr>> {
        if text.trim().is_empty() {
            return Some(None);
        }
        self.socket_addr(key, text).map(Some)
    }

    /// A CIDR, or a bare IP meaning that one address (/32 or /128).
    fn cidr(&mut self, key: &str, text: &str) -> Option<IpNet> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Some(net);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(IpNet::from(ip));
        }
        self.problem(key, "must be a CIDR (10.0.0.0/8) or an IP address");
        None
    }

    fn duration(&mut self, key: &str, text: &str) -> Option<Duration> {
        parse_duration(text)
            .map_err(|err| self.problem(key, err.to_string()))
            .ok()
    }

    /// A secret given inline or through its `_file` twin (a mounted
    /// Kubernetes Secret); file content is trimmed. `Some("")` when neither
    /// is set, so the caller decides whether that is allowed.
    fn secret_twin(
        &mut self,
        key: &str,
        value: &str,
        file_key: &str,
        file: &str,
    ) -> Option<String> {
        let file = file.trim();
        match (value.is_empty(), file.is_empty()) {
            (false, false) => {
                self.problem(
                    file_key,
                    format!("set either {key} or {file_key}, not both"),
                );
                None
            }
            (false, true) => Some(value.to_string()),
            (true, true) => Some(String::new()),
            (true, false) => match std::fs::read_to_string(file) {
                Ok(content) if content.trim().is_empty() => {
                    self.problem(file_key, format!("file {file} is empty"));
                    None
                }
                Ok(content) => Some(content.trim().to_string()),
                Err(err) => {
                    self.problem(file_key, format!("cannot read {file}: {err}"));
                    None
                }
            },
        }
    }

    fn required_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        let path = path.trim();
        if path.is_empty() {
            self.problem(key, "must not be empty");
            return None;
        }
        self.readable_file(key, path)
    }

    fn optional_file(&mut self, key: &str, path: &str) -> Option<Option<PathBuf>> {
        let path = path.trim();
        if path.is_empty() {
            return Some(None);
        }
        self.readable_file(key, path).map(Some)
    }

    fn readable_file(&mut self, key: &str, path: &str) -> Option<PathBuf> {
        match std::fs::File::open(path) {
            Ok(_) if Path::new(path).is_file() => Some(PathBuf::from(path)),
            Ok(_) => {
                self.problem(key, format!("{path} is not a file"));
                None
            }
            Err(err) => {
                self.problem(key, format!("cannot read {path}: {err}"));
                None
            }
        }
    }
}

// === Free helpers ===

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The one informative line of a regex error (its Display spans several
/// lines with a caret diagram, and `check` prints one line per problem).
fn regex_error_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}

/// Cookie secret bytes, as oauth2-proxy reads them: base64 (std or url,
/// padded or not) when that decodes to an AES key size, else the raw bytes.
/// On failure returns the length to report: the decoded one when the text
/// is long enough to be meant as base64 (22+ chars), else the raw one.
fn decode_cookie_secret(text: &str) -> Result<Vec<u8>, usize> {
    const VALID: [usize; 3] = [16, 24, 32];
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engines = [
        GeneralPurpose::new(&base64::alphabet::STANDARD, config),
        GeneralPurpose::new(&base64::alphabet::URL_SAFE, config),
    ];
    let decoded = engines.iter().find_map(|engine| engine.decode(text).ok());
    match decoded {
        Some(bytes) if VALID.contains(&bytes.len()) => Ok(bytes),
        _ if VALID.contains(&text.len()) => Ok(text.as_bytes().to_vec()),
        Some(bytes) if text.len() >= 22 => Err(bytes.len()),
        _ => Err(text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const MINIMAL: &str = "
provider:
  issuer_url: https://idp.example.com/realms/demo
  client_id: authgate
cookie:
  secret: 0123456789abcdef
upstreams:
  - path: /
    url: http://127.0.0.1:8080
";

    /// DNS stand-in: `app.internal` resolves, everything else fails.
    fn fake_dns(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match host {
            "app.internal" => Ok(vec![SocketAddr::from(([10, 1, 2, 3], port))]),
            "empty.internal" => Ok(Vec::new()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            )),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// MINIMAL with `extra` deep-merged over it (maps merge, the rest replaces).
    fn with(extra: &str) -> String {
        fn merge(base: &mut Value, over: Value) {
            match (base, over) {
                (Value::Mapping(base), Value::Mapping(over)) => {
                    for (k, v) in over {
                        match base.get_mut(&k) {
                            Some(existing) if existing.is_mapping() && v.is_mapping() => {
                                merge(existing, v)
                            }
                            _ => {
                                base.insert(k, v);
                            }
                        }
                    }
                }
                (base, over) => *base = over,
            }
        }
        let mut base: Value = serde_yaml::from_str(MINIMAL).unwrap();
        let over: Value = serde_yaml::from_str(extra).unwrap();
        merge(&mut base, over);
        serde_yaml::to_string(&base).unwrap()
    }

    fn load_ok(yaml: &str) -> Config {
        match load_str_with(yaml, &no_env, &fake_dns) {
            Ok(config) => config,
            Err(err) => panic!(
                "expected a valid config, got: {:?}",
                err.lines().collect::<Vec<_>>()
            ),
        }
    }

    fn problems(yaml: &str) -> Vec<String> {
        problems_with_env(yaml, &no_env)
    }

    fn problems_with_env(yaml: &str, env: EnvLookup<'_>) -> Vec<String> {
        match load_str_with(yaml, env, &fake_dns) {
            Ok(_) => panic!("expected problems, config loaded"),
            Err(err) => err.lines().collect(),
        }
    }

    fn assert_has(problems: &[String], expected: &str) {
        assert!(
            problems.iter().any(|p| p == expected),
            "missing problem {expected:?} in {problems:#?}"
        );
    }

    fn assert_has_prefix(problems: &[String], prefix: &str) {
        assert!(
            problems.iter().any(|p| p.starts_with(prefix)),
            "no problem starting with {prefix:?} in {problems:#?}"
        );
    }

    // === Defaults ===

    #[test]
    fn minimal_file_gets_the_contract_defaults() {
        let c = load_ok(MINIMAL);
        assert_eq!(c.server.listen, "0.0.0.0:4180".parse().unwrap());
        assert_eq!(c.server.ext_authz_http, None);
        assert_eq!(c.server.ext_authz_grpc, None);
        assert_eq!(c.server.metrics, None);
        assert_eq!(c.server.ext_authz_path_prefix, "");
        assert!(c.server.trusted_proxies.is_empty());
        assert!(c.server.tls.is_none());
        assert!(c.server.threads >= 1);
        assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));

        assert_eq!(c.provider.scopes, ["openid", "email", "profile", "groups"]);
        assert!(c.provider.endpoints.is_none());
        assert!(c.provider.pkce);
        assert!(c.provider.redirect_url.is_none());
        assert_eq!(c.provider.client_secret, "");
        assert_eq!(c.provider.claims.user, ClaimPath(vec!["email".into()]));
        assert_eq!(c.provider.claims.email, ClaimPath(vec!["email".into()]));
        assert_eq!(c.provider.claims.groups, ClaimPath(vec!["groups".into()]));
        assert_eq!(
            c.provider.claims.preferred_username,
            ClaimPath(vec!["preferred_username".into()])
        );
        assert!(!c.provider.allow_unverified_email);

        assert_eq!(c.cookie.name, "_oauth2_proxy");
        assert_eq!(c.cookie.secret, b"0123456789abcdef");
        assert_eq!(c.cookie.path, "/");
        assert!(c.cookie.secure && c.cookie.http_only);
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert_eq!(c.cookie.expire, Duration::from_secs(168 * 3600));
        assert_eq!(c.cookie.refresh, None);

        assert!(matches!(c.session, Session::Cookie));
        assert_eq!(c.authorization.email_domains, ["*"]);
        assert!(c.authorization.bearer_tokens);
        assert!(!c.authorization.skip_preflight);
        assert!(!c.headers.pass_authorization && !c.headers.pass_access_token);
    }

    #[test]
    fn default_identity_headers_are_the_contracts_eight() {
        let c = load_ok(MINIMAL);
        let got: Vec<(String, IdentityClaim)> = c
            .headers
            .identity
            .iter()
            .map(|h| (h.name.as_str().to_string(), h.claim))
            .collect();
        use IdentityClaim::*;
        let expected = [
            ("x-auth-request-user", User),
            ("x-auth-request-email", Email),
            ("x-auth-request-preferred-username", PreferredUsername),
            ("x-auth-request-groups", Groups),
            ("x-forwarded-user", User),
            ("x-forwarded-email", Email),
            ("x-forwarded-preferred-username", PreferredUsername),
            ("x-forwarded-groups", Groups),
        ]
        .map(|(n, c)| (n.to_string(), c));
        assert_eq!(got, expected);
    }

    #[test]
    fn empty_identity_list_means_no_identity_headers() {
        let c = load_ok(&with("headers: { identity: [] }"));
        assert!(c.headers.identity.is_empty());
    }

    #[test]
    fn key_without_value_takes_its_default() {
        let c = load_ok(&format!("{MINIMAL}session:\nredirect:\n"));
        assert!(matches!(c.session, Session::Cookie));
    }

    #[test]
    fn numbers_and_bools_are_accepted_in_text_fields() {
        let c = load_ok(&with("provider: { client_id: 12345 }"));
        assert_eq!(c.provider.client_id, "12345");
    }

    #[test]
    fn plain_http_issuer_is_accepted() {
        let c = load_ok(&with("provider: { issuer_url: 'http://127.0.0.1:9000' }"));
        assert_eq!(c.provider.issuer_url.scheme(), "http");
    }

    // === Unknown keys and serde errors ===

    #[test]
    fn unknown_key_is_named_by_full_path() {
        let p = problems(&with("cookie: { secrte: x }"));
        assert_eq!(p, ["cookie.secrte: unknown key"]);
    }

    #[test]
    fn unknown_keys_everywhere_are_all_reported() {
        let p = problems(&with(
            "
colour: blue
server: { listne: '0.0.0.0:1' }
upstreams:
  - { path: /, url: 'http://127.0.0.1:8080', hots: x }
",
        ));
        assert_has(&p, "colour: unknown key");
        assert_has(&p, "server.listne: unknown key");
        assert_has(&p, "upstreams[0].hots: unknown key");
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn wrong_type_is_reported_with_its_path_and_only_once() {
        let p = problems(&with(
            "cookie: { secure: maybe }\nprovider: { scopes: openid }",
        ));
        assert_has_prefix(&p, "cookie.secure: ");
        assert_has_prefix(&p, "provider.scopes: invalid type");
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn wrong_type_inside_a_list_does_not_cascade() {
        let p = problems(&with("upstreams: ['http://127.0.0.1:8080']"));
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_has_prefix(&p, "upstreams[0]: invalid type");
    }

    #[test]
    fn type_error_on_a_secret_does_not_echo_it() {
        let p = problems(&with(
            "cookie: { secret: { nested: hunter2hunter2hunter2 } }",
        ));
        assert_eq!(p, ["cookie.secret: invalid type: expected a string"]);
    }

    #[test]
    fn yaml_syntax_error_is_one_problem() {
        let p = problems("provider: [unclosed\n");
        assert_eq!(p.len(), 1);
        assert_has_prefix(&p, "(yaml): ");
    }

    #[test]
    fn root_must_be_a_mapping() {
        assert_eq!(
            problems("- a\n- b\n"),
            ["(root): the configuration must be a YAML mapping of sections"]
        );
    }

    #[test]
    fn empty_file_reports_every_required_key() {
        let p = problems("");
        assert_has(&p, "provider.issuer_url: must not be empty");
        assert_has(&p, "provider.client_id: must not be empty");
        assert_has_prefix(&p, "cookie.secret: must not be empty");
        assert_has(&p, "upstreams: must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)");
    }

    #[test]
    fn problems_are_all_reported_at_once() {
        let p = problems(
            "
server: { listen: 'nowhere', threads: many }
provider: { issuer_url: 'ftp://idp', client_id: '' , bogus: 1 }
cookie: { secret: short12, same_site: sideways, expire: forever }
session: { store: memcached }
authorization: { skip_auth_routes: ['GET=(' ] }
upstreams:
  - { path: api, url: 'http://127.0.0.1:1' }
headers: { identity: [ { name: 'Bad Header', claim: nickname } ] }
",
        );
        for expected in [
            "server.threads: ",
            "server.listen: must be IP:PORT",
            "provider.bogus: unknown key",
            "provider.issuer_url: scheme must be http or https",
            "provider.client_id: must not be empty",
            "cookie.secret: must decode to 16, 24 or 32 bytes, got 7",
            "cookie.same_site: must be lax, strict or none",
            "cookie.expire: ",
            "session.store: must be cookie or redis",
            "authorization.skip_auth_routes[0]: invalid regex",
            "upstreams[0].path: must start with /",
            "headers.identity[0].name: must be a valid HTTP header name",
            "headers.identity[0].claim: must be user, email, preferred_username or groups",
        ] {
            assert_has_prefix(&p, expected);
        }
        assert_eq!(p.len(), 13, "{p:#?}");
    }

    #[test]
    fn problem_displays_as_key_colon_message() {
        assert_eq!(Problem::new("a.b[0]", "bad").to_string(), "a.b[0]: bad");
    }

    // === Environment ===

    #[test]
    fn env_variables_are_expanded_in_values() {
        let env = |name: &str| match name {
            "OIDC_CLIENT_SECRET" => Some("s#cret: with yaml chars".to_string()),
            "APP_PORT" => Some("9090".to_string()),
            "SECURE" => Some("false".to_string()),
            _ => None,
        };
        let yaml = with(
            "
provider: { client_secret: '${OIDC_CLIENT_SECRET}' }
cookie: { secure: '${SECURE}' }
upstreams: [ { path: /, url: 'http://127.0.0.1:${APP_PORT}' } ]
authorization: { api_routes: ['^/api$'] }
",
        );
        let c = load_str_with(&yaml, &env, &fake_dns).unwrap();
        assert_eq!(c.provider.client_secret, "s#cret: with yaml chars");
        assert!(!c.cookie.secure);
        assert_eq!(c.upstreams[0].addr.port(), 9090);
        assert_eq!(c.authorization.api_routes[0].as_str(), "^/api$");
    }

    #[test]
    fn missing_env_variable_names_variable_and_key_once() {
        let p = problems(&with(
            "provider: { client_secret: '${OIDC_CLIENT_SECRET}' }\n\
             upstreams: [ { path: /, url: 'http://${APP_HOST}:80' } ]",
        ));
        assert_has(
            &p,
            "provider.client_secret: environment variable OIDC_CLIENT_SECRET is not set",
        );
        assert_has(
            &p,
            "upstreams[0].url: environment variable APP_HOST is not set",
        );
        // No derived "invalid URL" for the unexpanded value.
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    #[test]
    fn dollar_without_braces_is_kept_literally() {
        let c = load_ok(&with("provider: { client_secret: 'pa$$w$rd$' }"));
        assert_eq!(c.provider.client_secret, "pa$$w$rd$");
    }

    // === _file twins ===

    fn temp_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content.as_bytes()).unwrap();
        file
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let client = temp_file("  client-secret \n");
        // 32 bytes 0..31, base64url, with the newline `kubectl create secret` keeps.
        let cookie = temp_file("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n");
        let yaml = format!(
            "
provider:
  issuer_url: https://idp.example.com
  client_id: authgate
  client_secret_file: {}
cookie:
  secret_file: {}
upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]
",
            client.path().display(),
            cookie.path().display()
        );
        let c = load_ok(&yaml);
        assert_eq!(c.provider.client_secret, "client-secret");
        assert_eq!(c.cookie.secret, (0u8..32).collect::<Vec<_>>());
    }

    #[test]
    fn value_and_file_together_is_a_problem() {
        let file = temp_file("x");
        let p = problems(&with(&format!(
            "provider: {{ client_secret: a, client_secret_file: '{}' }}",
            file.path().display()
        )));
        assert_eq!(
            p,
            ["provider.client_secret_file: set either provider.client_secret or provider.client_secret_file, not both"]
        );
    }

    #[test]
    fn unreadable_or_empty_secret_file_is_a_problem() {
        let empty = temp_file(" \n");
        let p = problems(&format!(
            "
provider: {{ issuer_url: 'https://idp', client_id: a, client_secret_file: /nonexistent/authgate-secret }}
cookie: {{ secret_file: '{}' }}
upstreams: [ {{ path: /, url: 'http://127.0.0.1:8080' }} ]
",
            empty.path().display()
        ));
        assert_has_prefix(
            &p,
            "provider.client_secret_file: cannot read /nonexistent/authgate-secret",
        );
        assert_has_prefix(&p, "cookie.secret_file: file ");
        assert_eq!(p.len(), 2, "{p:#?}");
    }

    // === Cookie secret ===

    #[test]
    fn cookie_secret_accepts_raw_and_base64_forms() {
        // Like oauth2-proxy, base64 wins when it yields a key size: 32
        // base64 characters are 24 bytes, not 32 raw ones.
        assert_eq!(decode_cookie_secret(&"A".repeat(32)), Ok(vec![0; 24]));
        let key32: Vec<u8> = (0u8..32).collect();
        let key16: Vec<u8> = (100u8..116).collect();
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        assert_eq!(
            decode_cookie_secret("0123456789abcdef"),
            Ok(b"0123456789abcdef".to_vec())
        );
        assert_eq!(decode_cookie_secret(&"x".repeat(24)), Ok(b"x".repeat(24)));
        assert_eq!(decode_cookie_secret(&"!".repeat(32)), Ok(b"!".repeat(32)));
        assert_eq!(
            decode_cookie_secret(&STANDARD.encode(&key32)),
            Ok(key32.clone())
        );
        assert_eq!(
            decode_cookie_secret(&URL_SAFE_NO_PAD.encode(&key32)),
            Ok(key32.clone())
        );
        assert_eq!(
            decode_cookie_secret(STANDARD.encode(&key32).trim_end_matches('=')),
            Ok(key32.clone())
        );
        assert_eq!(decode_cookie_secret(&STANDARD.encode(&key16)), Ok(key16));
        let url_padded = base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 24]);
        assert!(url_padded.contains('-') || url_padded.contains('_'));
        assert_eq!(decode_cookie_secret(&url_padded), Ok(vec![0xfb; 24]));
    }

    #[test]
    fn cookie_secret_of_wrong_size_reports_its_length() {
        assert_eq!(decode_cookie_secret("1234567"), Err(7));
        let twenty = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 20]);
        assert_eq!(decode_cookie_secret(&twenty), Err(20));
        assert_eq!(
            problems(&with("cookie: { secret: 'abcdefg' }")),
            ["cookie.secret: must decode to 16, 24 or 32 bytes, got 7"]
        );
    }

    // === Durations in keys ===

    #[test]
    fn durations_are_parsed_and_bad_ones_name_their_key() {
        let c = load_ok(&with(
            "cookie: { expire: 1h30m, refresh: 30m }\nserver: { shutdown_grace: 500ms }",
        ));
        assert_eq!(c.cookie.expire, Duration::from_secs(5400));
        assert_eq!(c.cookie.refresh, Some(Duration::from_secs(1800)));
        assert_eq!(c.server.shutdown_grace, Duration::from_millis(500));

        let p = problems(&with("cookie: { expire: '-5m', refresh: soon }"));
        assert_has(&p, "cookie.expire: must not be negative");
        assert_has_prefix(&p, "cookie.refresh: expected a number followed by a unit");
    }

    #[test]
    fn refresh_must_be_shorter_than_expire_and_expire_positive() {
        assert_eq!(
            problems(&with("cookie: { expire: 1h, refresh: 2h }")),
            ["cookie.refresh: must be shorter than cookie.expire"]
        );
        assert_eq!(
            problems(&with("cookie: { expire: 0s }")),
            ["cookie.expire: must be greater than 0"]
        );
    }

    // === Cookie attributes ===

    #[test]
    fn same_site_none_requires_secure() {
        assert_eq!(
            problems(&with("cookie: { same_site: none, secure: false }")),
            ["cookie.same_site: none requires cookie.secure: true (browsers drop the cookie otherwise)"]
        );
        let c = load_ok(&with("cookie: { same_site: None }"));
        assert_eq!(c.cookie.same_site, SameSite::None);
    }

    #[test]
    fn cookie_name_must_be_a_token_and_respect_prefixes() {
        assert_has_prefix(
            &problems(&with("cookie: { name: 'my cookie' }")),
            "cookie.name: must be a cookie name token",
        );
        assert_has_prefix(
            &problems(&with("cookie: { name: 'a;b' }")),
            "cookie.name: must be a cookie name token",
        );
        assert_has_prefix(
            &problems(&with("cookie: { name: '' }")),
            "cookie.name: must not be empty",
        );
        assert_has_prefix(
            &problems(&with("cookie: { name: __Host-s, domains: [example.com] }")),
            "cookie.name: the __Host- prefix",
        );
        assert_has_prefix(
            &problems(&with("cookie: { name: __Secure-s, secure: false }")),
            "cookie.name: the __Secure-/__Host- prefix requires",
        );
        assert_eq!(
            load_ok(&with("cookie: { name: __Host-auth }")).cookie.name,
            "__Host-auth"
        );
    }

    #[test]
    fn cookie_path_must_be_absolute() {
        assert_eq!(
            problems(&with("cookie: { path: app }")),
            ["cookie.path: must start with /"]
        );
    }

    // === Provider ===

    #[test]
    fn discovery_off_requires_each_endpoint_by_key() {
        let p = problems(&with(
            "provider: { discovery: false, token_endpoint: 'https://idp/token' }",
        ));
        assert_eq!(
            p,
            [
                "provider.authorization_endpoint: is required when provider.discovery is false",
                "provider.userinfo_endpoint: is required when provider.discovery is false",
                "provider.jwks_uri: is required when provider.discovery is false",
            ]
        );
    }

    #[test]
    fn discovery_off_builds_the_endpoints() {
        let c = load_ok(&with(
            "provider:
               discovery: false
               authorization_endpoint: https://idp/auth
               token_endpoint: https://idp/token
               userinfo_endpoint: https://idp/userinfo
               jwks_uri: https://idp/certs
               end_session_endpoint: https://idp/logout",
        ));
        let e = c.provider.endpoints.unwrap();
        assert_eq!(e.token_endpoint.as_str(), "https://idp/token");
        assert_eq!(e.jwks_uri.as_str(), "https://idp/certs");
        assert_eq!(
            e.end_session_endpoint.unwrap().as_str(),
            "https://idp/logout"
        );
    }

    #[test]
    fn provider_urls_and_scopes_are_checked() {
        let p = problems(&with(
            "provider: { redirect_url: '/oauth2/callback', scopes: [email], claims: { groups: 'realm_access..roles' } }",
        ));
        assert_has_prefix(&p, "provider.redirect_url: invalid URL");
        assert_has(&p, "provider.scopes: must include openid");
        assert_has_prefix(&p, "provider.claims.groups: must be a claim name");
        assert_eq!(p.len(), 3, "{p:#?}");
    }

    #[test]
    fn dotted_claims_are_split() {
        let c = load_ok(&with(
            "provider: { claims: { groups: realm_access.roles } }",
        ));
        assert_eq!(
            c.provider.claims.groups,
            ClaimPath(vec!["realm_access".into(), "roles".into()])
        );
    }

    #[test]
    fn ca_file_must_exist() {
        assert_has_prefix(
            &problems(&with("provider: { ca_file: /nonexistent/ca.pem }")),
            "provider.ca_file: cannot read /nonexistent/ca.pem",
        );
        let ca = temp_file("pem");
        let c = load_ok(&with(&format!(
            "provider: {{ ca_file: '{}' }}",
            ca.path().display()
        )));
        assert_eq!(c.provider.ca_file.as_deref(), Some(ca.path()));
    }

    // === Server ===

    #[test]
    fn server_addresses_and_proxies_are_parsed() {
        let c = load_ok(&with(
            "server:
               listen: '[::]:4180'
               ext_authz_grpc: 127.0.0.1:4182
               ext_authz_path_prefix: /authz
               trusted_proxies: [10.0.0.0/8, 192.168.1.7, '::1']
               threads: 3",
        ));
        assert_eq!(c.server.listen, "[::]:4180".parse().unwrap());
        assert_eq!(
            c.server.ext_authz_grpc,
            Some("127.0.0.1:4182".parse().unwrap())
        );
        assert_eq!(c.server.ext_authz_path_prefix, "/authz");
        let nets: Vec<String> = c
            .server
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
        assert_eq!(c.server.threads, 3);
    }

    #[test]
    fn zero_threads_means_the_number_of_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(
            load_ok(&with("server: { threads: 0 }")).server.threads,
            cores
        );
    }

    #[test]
    fn bad_server_values_are_problems() {
        let p = problems(&with(
            "server:
               listen: 'localhost:4180'
               metrics: 0.0.0.0:4180
               ext_authz_http: 0.0.0.0:4180
               ext_authz_path_prefix: authz
               trusted_proxies: [10.0.0.0/33, proxy]
               tls: { cert_file: /nonexistent/cert.pem }",
        ));
        assert_has_prefix(&p, "server.listen: must be IP:PORT");
        assert_has(&p, "server.metrics: same address as server.ext_authz_http");
        assert_has(
            &p,
            "server.ext_authz_path_prefix: must start with / (or be empty)",
        );
        assert_has_prefix(&p, "server.trusted_proxies[0]: must be a CIDR");
        assert_has_prefix(&p, "server.trusted_proxies[1]: must be a CIDR");
        assert_has_prefix(&p, "server.tls.cert_file: cannot read");
        assert_has(&p, "server.tls.key_file: must not be empty");
        assert_eq!(p.len(), 7, "{p:#?}");
    }

    // === Session ===

    #[test]
    fn redis_url_is_checked_only_for_the_redis_store() {
        load_ok(&with(
            "session: { store: cookie, redis: { url: 'not a url' } }",
        ));
        for url in [
            "redis://127.0.0.1:6379/0",
            "rediss://user:pw@redis.example.com:6380",
            "redis+sentinel://s1:26379,s2:26379/mymaster",
            "redis+cluster://n1:6379,n2:6379",
            "rediss+cluster://n1:6379",
        ] {
            let c = load_ok(&with(&format!(
                "session: {{ store: redis, redis: {{ url: '{url}' }} }}"
            )));
            assert!(matches!(c.session, Session::Redis(Redis { url: ref u }) if u == url));
        }
        assert_has_prefix(
            &problems(&with(
                "session: { store: redis, redis: { url: 'http://redis:6379' } }",
            )),
            "session.redis.url: scheme must be one of redis, rediss",
        );
        assert_has_prefix(
            &problems(&with(
                "session: { store: redis, redis: { url: 'redis-host:6379' } }",
            )),
            "session.redis.url: must be a URL",
        );
    }

    // === Authorization and redirect ===

    #[test]
    fn routes_compile_with_optional_method() {
        let c = load_ok(&with(
            "authorization:
               skip_auth_routes: ['get=^/public/', '^/health$', '^/a=b$']
               api_routes: ['^/api/']
               email_domains: [Example.COM]
               allowed_emails: [Alice@Example.com]
               allowed_groups: [admins]",
        ));
        let routes = &c.authorization.skip_auth_routes;
        assert_eq!(routes[0].method.as_deref(), Some("GET"));
        assert_eq!(routes[0].path.as_str(), "^/public/");
        assert_eq!(routes[1].method, None);
        assert_eq!(routes[2].method, None);
        assert_eq!(routes[2].path.as_str(), "^/a=b$");
        assert!(c.authorization.api_routes[0].is_match("/api/x"));
        assert_eq!(c.authorization.email_domains, ["example.com"]);
        assert_eq!(c.authorization.allowed_emails, ["alice@example.com"]);
        assert_eq!(c.authorization.allowed_groups, ["admins"]);
    }

    #[test]
    fn bad_authorization_entries_are_problems_by_index() {
        let p = problems(&with(
            "authorization:
               skip_auth_routes: ['^/ok', 'POST=']
               api_routes: ['[z-a]']
               allowed_emails: ['a@b@c', nobody]
               email_domains: ['@example.com']
               extra_jwt_issuers: [ { issuer_url: 'https://other' } ]",
        ));
        assert_has_prefix(
            &p,
            "authorization.skip_auth_routes[1]: regex must not be empty",
        );
        assert_has_prefix(&p, "authorization.api_routes[0]: invalid regex: ");
        assert_has(
            &p,
            "authorization.allowed_emails[0]: must be an address with exactly one @",
        );
        assert_has(
            &p,
            "authorization.allowed_emails[1]: must be an address with exactly one @",
        );
        assert_has_prefix(
            &p,
            "authorization.email_domains[0]: must be a domain without @",
        );
        assert_has(
            &p,
            "authorization.extra_jwt_issuers[0].audience: must not be empty",
        );
        assert_eq!(p.len(), 6, "{p:#?}");
        assert!(p.iter().all(|line| !line.contains('\n')));
    }

    #[test]
    fn extra_issuers_are_parsed() {
        let c = load_ok(&with(
            "authorization: { extra_jwt_issuers: [ { issuer_url: 'https://other/realms/x', audience: api } ] }",
        ));
        let issuer = &c.authorization.extra_jwt_issuers[0];
        assert_eq!(issuer.issuer_url.as_str(), "https://other/realms/x");
        assert_eq!(issuer.audience, "api");
    }

    #[test]
    fn redirect_domains_are_hosts_lowercased() {
        let c = load_ok(&with(
            "redirect: { allowed_domains: [.Example.com, app.example.org] }",
        ));
        assert_eq!(
            c.redirect.allowed_domains,
            [".example.com", "app.example.org"]
        );
        assert_has_prefix(
            &problems(&with(
                "redirect: { allowed_domains: ['https://example.com/'] }",
            )),
            "redirect.allowed_domains[0]: must be a host name",
        );
    }

    // === Upstreams ===

    #[test]
    fn at_least_one_upstream_is_required() {
        assert_eq!(
            problems(&with("upstreams: []")),
            ["upstreams: must list at least one upstream (or set server.ext_authz_http/ext_authz_grpc)"]
        );
    }

    #[test]
    fn ext_authz_only_deployments_need_no_upstream() {
        let yaml = with("upstreams: []\nserver:\n  ext_authz_http: 127.0.0.1:4181");
        let loaded = load_str_with(&yaml, &no_env, &fake_dns);
        assert!(loaded.is_ok(), "{:?}", loaded.err());
    }

    #[test]
    fn upstream_paths_schemes_and_hosts_are_checked() {
        let p = problems(&with(
            "upstreams:
               - { path: /, url: 'http://127.0.0.1:8080' }
               - { path: app, url: 'http://127.0.0.1:8081' }
               - { path: /x, url: 'ftp://127.0.0.1' }
               - { path: /, url: 'http://127.0.0.1:8082' }
               - { path: /y, url: 'http://127.0.0.1:8083', host: 'bad host' }
               - { path: /z, url: '' }",
        ));
        assert_eq!(
            p,
            [
                "upstreams[1].path: must start with /",
                "upstreams[2].url: scheme must be http or https",
                "upstreams[3].path: same path as upstreams[0]",
                "upstreams[4].host: must be a host name with an optional :port",
                "upstreams[5].url: must not be empty",
            ]
        );
    }

    #[test]
    fn upstream_hosts_are_resolved_with_default_ports() {
        let c = load_ok(&with(
            "upstreams:
               - { path: /, url: 'http://app.internal' }
               - { path: /secure, url: 'https://app.internal/base', host: app.example.com }
               - { path: /v6, url: 'http://[::1]:81' }",
        ));
        assert_eq!(c.upstreams[0].addr, "10.1.2.3:80".parse().unwrap());
        assert!(!c.upstreams[0].tls);
        assert_eq!(c.upstreams[1].addr, "10.1.2.3:443".parse().unwrap());
        assert!(c.upstreams[1].tls);
        assert_eq!(c.upstreams[1].host.as_deref(), Some("app.example.com"));
        assert_eq!(c.upstreams[2].addr, "[::1]:81".parse().unwrap());
        assert_eq!(c.upstreams[2].host, None);
    }

    #[test]
    fn unresolvable_upstream_is_reported_with_other_problems() {
        let p = problems(&with(
            "cookie: { secret: short }
upstreams:
  - { path: /, url: 'http://nowhere.invalid:8080' }
  - { path: /b, url: 'http://empty.internal' }",
        ));
        assert_eq!(
            p,
            [
                "cookie.secret: must decode to 16, 24 or 32 bytes, got 5",
                "upstreams[0].url: cannot resolve host nowhere.invalid: no such host",
                "upstreams[1].url: cannot resolve host empty.internal: no addresses",
            ]
        );
    }

    // === Headers ===

    #[test]
    fn identity_headers_validate_name_claim_and_reserved_names() {
        let p = problems(&with(
            "headers:
               identity:
                 - { name: X-User, claim: user }
                 - { name: Host, claim: email }
                 - { name: 'X User', claim: email }
                 - { name: X-Nick, claim: nickname }",
        ));
        assert_eq!(
            p,
            [
                "headers.identity[1].name: host cannot carry identity",
                "headers.identity[2].name: must be a valid HTTP header name",
                "headers.identity[3].claim: must be user, email, preferred_username or groups",
            ]
        );
        let c = load_ok(&with("headers: { pass_access_token: true, identity: [ { name: X-Who, claim: preferred_username } ] }"));
        assert!(c.headers.pass_access_token);
        assert_eq!(c.headers.identity[0].name.as_str(), "x-who");
        assert_eq!(
            c.headers.identity[0].claim,
            IdentityClaim::PreferredUsername
        );
    }

    // === The shipped examples ===

    #[test]
    fn shipped_conf_files_load_with_their_env() {
        let env = |name: &str| match name {
            "OIDC_CLIENT_SECRET" => Some("ci-client-secret".to_string()),
            "COOKIE_SECRET" => Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".to_string()),
            _ => None,
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
        let prod = load_with_env(&dir.join("authgate.yaml"), &env)
            .unwrap_or_else(|e| panic!("{:?}", e.lines().collect::<Vec<_>>()));
        assert_eq!(
            prod.provider.issuer_url.as_str(),
            "https://keycloak.example.com/realms/demo"
        );
        assert_eq!(prod.cookie.secret, (0u8..32).collect::<Vec<_>>());
        assert_eq!(prod.authorization.allowed_groups, ["admins"]);
        assert_eq!(prod.upstreams[0].addr, "127.0.0.1:8080".parse().unwrap());

        let dev = load_with_env(&dir.join("dev.yaml"), &no_env)
            .unwrap_or_else(|e| panic!("{:?}", e.lines().collect::<Vec<_>>()));
        assert!(!dev.cookie.secure);
        assert_eq!(dev.provider.issuer_url.as_str(), "http://127.0.0.1:9000/");

        let p: Vec<String> = load_with_env(&dir.join("authgate.yaml"), &no_env)
            .unwrap_err()
            .lines()
            .collect();
        assert_eq!(
            p,
            [
                "provider.client_secret: environment variable OIDC_CLIENT_SECRET is not set",
                "cookie.secret: environment variable COOKIE_SECRET is not set",
            ]
        );
    }

    #[test]
    fn unreadable_config_file_is_a_problem_naming_it() {
        let err = load(Path::new("/nonexistent/authgate.yaml")).unwrap_err();
        assert_eq!(err.problems().len(), 1);
        assert!(err.problems()[0]
            .to_string()
            .starts_with("/nonexistent/authgate.yaml: cannot read"));
    }
}
