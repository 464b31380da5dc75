//! `policies`: which policy a request falls under ([`select`]) and whether
//! a signed-in identity meets it ([`evaluate`]). Called by the one decision
//! (`Gate::decide`, so the proxy and both ext_authz front ends),
//! `/oauth2/auth` and `authgate policy explain`; never blocks, never
//! panics, never logs a token or a claim's value.
//!
//! First match wins. A target servers read two ways (`..;`, `%2F`,
//! encoded dots: [`path::is_ambiguous`]) is matched conservatively, like
//! `skip_auth_routes`: every restrictive policy that any reading of it
//! matches applies (all must pass), and a `skip_auth` policy never applies.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::{path, rules, Identity, RequestView};
use crate::config::{Policy, PolicyExpression};

/// The request a policy is matched against: the request itself, or the
/// original one a trusted forward-auth caller reports to `/oauth2/auth`.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// As sent; empty when a forward-auth caller did not report it.
    pub method: &'a str,
    /// `host[:port]` as believed by the request edge.
    pub host: &'a str,
    /// Path and query as received (not normalised).
    pub uri: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// Servers may read the target differently, or a forward-auth caller's
    /// headers disagree: matched conservatively.
    pub ambiguous: bool,
}

impl<'a> Target<'a> {
    /// The target the policies decide for `req` (its reported original
    /// request for a trusted forward-auth call).
    pub fn of(req: &RequestView<'a>) -> Target<'a> {
        match &req.original {
            Some(o) => Target {
                method: o.method,
                host: o.host,
                uri: o.uri,
                path: o.path,
                ambiguous: o.conflicting || path::is_ambiguous(o.uri),
            },
            None => Target {
                method: req.method,
                host: req.host,
                uri: req.uri,
                path: req.path,
                ambiguous: path::is_ambiguous(req.uri),
            },
        }
    }

    /// The host without its port, for matching and CEL's `request.host`.
    pub fn hostname(&self) -> &'a str {
        hostname(self.host)
    }
}

/// What the policies say about a request before anyone is identified.
#[derive(Debug)]
pub enum Selection<'p> {
    /// No policy matches: `authorization` alone decides.
    None,
    /// A `skip_auth` policy matches: no authentication at all.
    Skip(&'p Policy),
    /// These restrictive policies apply (one, or several for an ambiguous
    /// target), each of which must pass.
    Apply(Vec<&'p Policy>),
}

/// The policies `t` falls under: the first match, or for an ambiguous
/// target every restrictive policy any reading matches.
pub fn select<'p>(policies: &'p [Policy], t: &Target<'_>) -> Selection<'p> {
    if policies.is_empty() {
        return Selection::None;
    }
    if !t.ambiguous {
        let readings = [t.path];
        return match policies.iter().find(|p| matches(p, t, &readings)) {
            None => Selection::None,
            Some(p) if p.skip_auth => Selection::Skip(p),
            Some(p) => Selection::Apply(vec![p]),
        };
    }
    let owned = readings(t.uri);
    let mut all: Vec<&str> = vec![t.path];
    all.extend(owned.iter().map(String::as_str));
    let applying: Vec<&Policy> = policies
        .iter()
        .filter(|p| !p.skip_auth && matches(p, t, &all))
        .collect();
    if applying.is_empty() {
        Selection::None
    } else {
        Selection::Apply(applying)
    }
}

/// Whether `p` matches `t` (host, method, and any of the path readings).
/// An unreported method (forward auth) matches a restrictive policy's
/// `methods` and never a `skip_auth` one's.
pub fn matches(p: &Policy, t: &Target<'_>, readings: &[&str]) -> bool {
    host_matches(&p.hosts, t.hostname())
        && method_matches(&p.methods, t.method, p.skip_auth)
        && (p.paths.is_empty()
            || readings
                .iter()
                .any(|r| p.paths.iter().any(|re| re.is_match(r))))
}

/// Which parts of a policy's match hold for a target (for
/// `authgate policy explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchParts {
    /// `hosts` is empty or names the target's host.
    pub host: bool,
    /// `methods` is empty or names the target's method.
    pub method: bool,
    /// `paths` is empty or one matches a reading of the target's path.
    pub path: bool,
}

impl MatchParts {
    /// All three hold.
    pub fn all(self) -> bool {
        self.host && self.method && self.path
    }
}

/// [`matches`] part by part, with every reading of an ambiguous target.
pub fn match_parts(p: &Policy, t: &Target<'_>) -> MatchParts {
    let owned = if t.ambiguous {
        readings(t.uri)
    } else {
        Vec::new()
    };
    let mut all: Vec<&str> = vec![t.path];
    all.extend(owned.iter().map(String::as_str));
    MatchParts {
        host: host_matches(&p.hosts, t.hostname()),
        method: method_matches(&p.methods, t.method, p.skip_auth),
        path: p.paths.is_empty() || all.iter().any(|r| p.paths.iter().any(|re| re.is_match(r))),
    }
}

/// Empty = any; `.example.com` = its subdomains (not `example.com` itself).
fn host_matches(hosts: &[String], host: &str) -> bool {
    hosts.is_empty()
        || hosts.iter().any(|h| match h.strip_prefix('.') {
            Some(_) => host.len() > h.len() && ends_with_ignore_case(host, h),
            None => host.eq_ignore_ascii_case(h),
        })
}

fn method_matches(methods: &[String], method: &str, skip_auth: bool) -> bool {
    if methods.is_empty() {
        return true;
    }
    if method.is_empty() {
        return !skip_auth;
    }
    methods.iter().any(|m| m.eq_ignore_ascii_case(method))
}

fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// `host[:port]` (or `[v6]:port`) without the port.
fn hostname(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 2]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Other ways servers read an ambiguous target besides [`path::normalize`]:
/// the raw path (nginx without decoding, `..;` a plain segment), with each
/// segment's `;params` dropped (Tomcat), and percent-decoded once.
fn readings(uri: &str) -> Vec<String> {
    let raw = raw_path(uri);
    let no_params: String = raw
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("/");
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    vec![
        raw.to_owned(),
        path::normalize(&no_params).into_owned(),
        path::normalize(&decoded).into_owned(),
    ]
}

/// The target without `scheme://authority` and without the raw query.
fn raw_path(uri: &str) -> &str {
    let no_origin = match uri.find("://") {
        Some(i) if uri[..i].bytes().all(|b| b.is_ascii_alphanumeric()) => {
            let rest = &uri[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        _ => uri,
    };
    no_origin.split(['?', '#']).next().unwrap_or("/")
}

// === what sessions keep ===

/// Claims that only verify the token itself: never read by a policy, so
/// not worth their bytes in every session cookie.
const BOOKKEEPING: [&str; 11] = [
    "nonce",
    "at_hash",
    "c_hash",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "jti",
    "sid",
    "typ",
    "session_state",
];

/// What a session keeps of the verified claims: nothing unless `need`
/// (`policies.need_claims`), else every claim but [`BOOKKEEPING`].
pub fn session_claims(
    need: bool,
    mut claims: Map<String, Value>,
) -> Option<crate::domain::Secret<Map<String, Value>>> {
    if !need || claims.is_empty() {
        return None;
    }
    claims.retain(|k, _| !BOOKKEEPING.contains(&k.as_str()));
    Some(crate::domain::Secret::new(claims))
}

// === conditions ===

/// One condition of a policy and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// `allowed_groups`, `allowed_emails/email_domains` or `expression`.
    pub condition: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed, without any token content (an evaluation error's kind).
    pub note: Option<String>,
}

/// Who is asking, for the conditions: the identity, the `sub` and the
/// verified claims (when kept).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The mapped identity.
    pub identity: &'a Identity,
    /// The verified ID token's or bearer token's claims, when kept.
    pub claims: Option<&'a Map<String, Value>>,
}

/// Every condition of `p` for `who` on `t`, in order; the policy passes
/// when all do. A policy without conditions passes.
pub fn evaluate(p: &Policy, who: Subject<'_>, t: &Target<'_>) -> Vec<Check> {
    let mut out = Vec::with_capacity(3);
    if !p.allowed_groups.is_empty() {
        out.push(Check {
            condition: "allowed_groups",
            passed: rules::groups_allowed(&who.identity.groups, &p.allowed_groups),
            note: None,
        });
    }
    if !p.allowed_emails.is_empty() || !p.email_domains.is_empty() {
        out.push(Check {
            condition: "allowed_emails/email_domains",
            passed: rules::email_in(&who.identity.email, &p.email_domains, &p.allowed_emails),
            note: None,
        });
    }
    if let Some(e) = &p.expression {
        let (passed, note) = match run(e, who, t) {
            Ok(true) => (true, None),
            Ok(false) => (false, None),
            Err(kind) => {
                warn_once(&p.name, &kind);
                (false, Some(kind))
            }
        };
        out.push(Check {
            condition: "expression",
            passed,
            note,
        });
    }
    out
}

/// The first of `policies` that `who` fails, if any.
pub fn first_failing<'p>(
    policies: &[&'p Policy],
    who: Subject<'_>,
    t: &Target<'_>,
) -> Option<&'p Policy> {
    policies
        .iter()
        .copied()
        .find(|p| evaluate(p, who, t).iter().any(|c| !c.passed))
}

/// Runs the CEL program; `Err` is the error's kind (never a value).
fn run(e: &PolicyExpression, who: Subject<'_>, t: &Target<'_>) -> Result<bool, String> {
    let mut ctx = cel::Context::with_env(env());
    let claims = who.claims.cloned().unwrap_or_default();
    let id = who.identity;
    let vars = [
        ("claims", Value::Object(claims)),
        (
            "identity",
            serde_json::json!({
                "user": id.user,
                "email": id.email,
                "groups": id.groups,
                "preferred_username": id.preferred_username,
            }),
        ),
        (
            "request",
            serde_json::json!({
                "method": t.method,
                "host": t.hostname(),
                "path": t.path,
            }),
        ),
    ];
    for (name, v) in vars {
        let v = cel::to_value(v).map_err(|_| format!("{name} cannot be given to CEL"))?;
        ctx.add_variable_from_value(name, v);
    }
    match e.program.execute(&ctx) {
        Ok(cel::Value::Bool(b)) => Ok(b),
        Ok(_) => Err("the expression is not a bool".to_owned()),
        Err(err) => Err(error_kind(&err).to_owned()),
    }
}

/// The CEL standard environment, built once (building it registers every
/// standard function).
fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(cel::Env::stdlib())).clone()
}

/// A CEL error's kind, without the values it may quote (claims).
fn error_kind(e: &cel::ExecutionError) -> &'static str {
    use cel::ExecutionError as E;
    match e {
        E::NoSuchKey(_) => "no such key (use has() for optional claims)",
        E::UndeclaredReference(_) => "undeclared reference",
        E::NoSuchOverload(_) | E::UnexpectedType { .. } | E::UnsupportedTargetType { .. } => {
            "wrong type"
        }
        E::ValuesNotComparable(..) => "values not comparable",
        E::IndexOutOfBounds(_) => "index out of bounds",
        E::DivisionByZero(_) | E::RemainderByZero(_) | E::Overflow(..) => "arithmetic error",
        _ => "evaluation error",
    }
}

/// Policies whose expression failed already (warned once per process and
/// policy name; bounded by the configured names).
fn warn_once(policy: &str, kind: &str) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut warned = WARNED.get_or_init(Default::default).lock();
    if warned.len() < 10_000 && warned.insert(policy.to_owned()) {
        tracing::warn!(
            policy,
            error = kind,
            "policy expression failed to evaluate; denying (logged once per policy)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn policy(name: &str) -> Policy {
        Policy {
            name: name.into(),
            hosts: vec![],
            paths: vec![],
            methods: vec![],
            skip_auth: false,
            allowed_groups: vec![],
            allowed_emails: vec![],
            email_domains: vec![],
            expression: None,
        }
    }

    fn target<'a>(method: &'a str, host: &'a str, uri: &'a str, path: &'a str) -> Target<'a> {
        Target {
            method,
            host,
            uri,
            path,
            ambiguous: path::is_ambiguous(uri),
        }
    }

    fn names(s: &Selection<'_>) -> Vec<String> {
        match s {
            Selection::None => vec![],
            Selection::Skip(p) => vec![format!("skip:{}", p.name)],
            Selection::Apply(v) => v.iter().map(|p| p.name.clone()).collect(),
        }
    }

    #[test]
    fn hosts_match_exactly_or_by_subdomain_without_the_port() {
        let hosts = vec!["prom.example.com".to_owned(), ".corp.io".to_owned()];
        assert!(host_matches(&hosts, hostname("prom.example.com:8443")));
        assert!(host_matches(&hosts, hostname("PROM.example.com")));
        assert!(host_matches(&hosts, hostname("a.b.corp.io")));
        assert!(!host_matches(&hosts, hostname("corp.io")));
        assert!(!host_matches(&hosts, hostname("evilcorp.io")));
        assert!(!host_matches(&hosts, hostname("prom.example.com.evil")));
        assert_eq!(hostname("[::1]:80"), "[::1]");
    }

    #[test]
    fn first_match_wins_and_skip_never_applies_to_an_ambiguous_target() {
        let mut public = policy("public");
        public.paths = vec![Regex::new("^/public/").unwrap()];
        public.skip_auth = true;
        let mut admin = policy("admin");
        admin.paths = vec![Regex::new("^/admin").unwrap()];
        admin.methods = vec!["POST".into()];
        let list = vec![public, admin];
        let t = target("GET", "h", "/public/x", "/public/x");
        assert_eq!(names(&select(&list, &t)), ["skip:public"]);
        let t = target("POST", "h", "/admin/x", "/admin/x");
        assert_eq!(names(&select(&list, &t)), ["admin"]);
        let t = target("GET", "h", "/admin/x", "/admin/x");
        assert!(names(&select(&list, &t)).is_empty());
        // `..;` is `..` to Tomcat: the admin policy applies, the skip does not.
        let t = target("POST", "h", "/public/..;/admin", "/admin");
        assert_eq!(names(&select(&list, &t)), ["admin"]);
        let t = target("POST", "h", "/public/%2e%2e/x", "/x");
        assert!(names(&select(&list, &t)).is_empty());
        // Nginx reads `/admin;x/y` literally, Tomcat as `/admin/y`.
        let t = target("POST", "h", "/admin;x/y", "/admin;x/y");
        assert_eq!(names(&select(&list, &t)), ["admin"]);
    }

    #[test]
    fn an_ambiguous_target_gets_every_restrictive_policy_any_reading_matches() {
        let mut open = policy("open");
        open.paths = vec![Regex::new("^/docs/").unwrap()];
        let mut admin = policy("admin");
        admin.paths = vec![Regex::new("^/admin/").unwrap()];
        let list = vec![open, admin];
        let t = target("GET", "h", "/docs/..;/admin/x", "/admin/x");
        assert_eq!(names(&select(&list, &t)), ["open", "admin"]);
        let t = target("GET", "h", "/docs/%2e%2e/admin/x", "/admin/x");
        assert_eq!(names(&select(&list, &t)), ["open", "admin"]);
    }

    fn compiled(src: &str) -> PolicyExpression {
        PolicyExpression {
            source: src.into(),
            program: Arc::new(cel::Program::compile(src).unwrap()),
            uses_claims: true,
        }
    }

    #[test]
    fn conditions_groups_emails_and_cel_all_must_pass() {
        let mut p = policy("p");
        p.allowed_groups = vec!["admins".into()];
        p.email_domains = vec!["example.com".into()];
        p.expression = Some(compiled(
            r#"has(claims.realm_access) && "prom-admin" in claims.realm_access.roles && request.method == "POST""#,
        ));
        let alice = Identity {
            user: "alice".into(),
            email: "alice@example.com".into(),
            preferred_username: "alice".into(),
            groups: vec!["admins".into()],
        };
        let claims = serde_json::json!({"realm_access": {"roles": ["prom-admin"]}});
        let who = Subject {
            identity: &alice,
            claims: claims.as_object(),
        };
        let t = target("POST", "h", "/", "/");
        assert!(evaluate(&p, who, &t).iter().all(|c| c.passed));
        let t = target("GET", "h", "/", "/");
        let checks = evaluate(&p, who, &t);
        assert_eq!(
            checks.iter().map(|c| c.passed).collect::<Vec<_>>(),
            [true, true, false]
        );
        let none = Subject {
            identity: &alice,
            claims: None,
        };
        assert!(!evaluate(&p, none, &target("POST", "h", "/", "/"))[2].passed);
    }

    #[test]
    fn evaluation_errors_deny_and_say_only_the_kind() {
        let mut p = policy("p");
        p.expression = Some(compiled(r#"claims.secret_thing == "x""#));
        let id = Identity::default();
        let claims = serde_json::json!({"other": "tok-value"});
        let who = Subject {
            identity: &id,
            claims: claims.as_object(),
        };
        let c = &evaluate(&p, who, &target("GET", "h", "/", "/"))[0];
        assert!(!c.passed);
        let note = c.note.clone().unwrap();
        assert!(
            !note.contains("tok-value") && !note.contains("secret_thing"),
            "{note}"
        );
        p.expression = Some(compiled(r#"identity.groups + 1"#));
        assert!(!evaluate(&p, who, &target("GET", "h", "/", "/"))[0].passed);
    }
    /// What keeping a typical Keycloak ID token's claims costs in the
    /// session cookie (README "Policies", "Cookie size"): the bytes of
    /// every `Set-Cookie` line a new session sends, without and with an
    /// expression that reads `claims`. The session holds Keycloak's three
    /// tokens (ID, access, refresh) either way; the claims come on top.
    #[tokio::test]
    async fn keycloak_claims_cost_in_the_session_cookie() {
        use crate::session::{codec::SessionCodec, cookies::CookieJar, store::SessionStore};
        use base64::Engine as _;
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let sig = |n: usize| "s".repeat(n);
        // A Keycloak 24 ID token for a user with realm and client roles.
        let realm = "https://keycloak.example.com/realms/istio";
        let claims = serde_json::json!({
            "exp": 1_764_520_000, "iat": 1_764_519_700, "auth_time": 1_764_519_690,
            "jti": "5b0c8a6e-2f61-4c3e-9d3e-0c1b7e2a9f11", "iss": realm, "aud": "authgate",
            "sub": "f3a1c9d2-7b4e-4a61-9c0d-2e5f8a7b6c41", "typ": "ID", "azp": "authgate",
            "nonce": "Qm9uY2VWYWx1ZUZvclRoZVRlc3RfMTIzNDU2Nzg",
            "session_state": "0f6e2c1a-9b8d-4e7f-a6c5-3d2b1e0f9a8c",
            "at_hash": "dGhpcyBpcyBhbiBhdF9oYXNo", "acr": "1",
            "sid": "0f6e2c1a-9b8d-4e7f-a6c5-3d2b1e0f9a8c", "email_verified": true,
            "realm_access": {"roles": ["default-roles-istio", "offline_access",
                "uma_authorization", "prom-admin", "grafana-editor"]},
            "resource_access": {
                "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
                "grafana": {"roles": ["editor"]},
                "prometheus": {"roles": ["admin", "viewer"]}},
            "name": "Alice Liddell", "preferred_username": "alice",
            "given_name": "Alice", "family_name": "Liddell", "email": "alice@example.com",
            "groups": ["/admins", "/platform-team"]
        });
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT",
            "kid": "3Yq8bM0kVn1xR5sT7uW9yA2cE4gI6kM8oQ0sU2wY4a6"});
        // RS256 over a 2048-bit key: 342 base64url characters.
        let id_token = format!("{}.{}.{}", b64(&header), b64(&claims), sig(342));
        let mut access = claims.as_object().unwrap().clone();
        access.insert("typ".into(), "Bearer".into());
        access.insert("scope".into(), "openid email profile".into());
        access.insert(
            "allowed-origins".into(),
            serde_json::json!(["https://app.example.com"]),
        );
        let access_token = format!(
            "{}.{}.{}",
            b64(&header),
            b64(&Value::Object(access)),
            sig(342)
        );
        // Keycloak's refresh token: HS512, few claims.
        let refresh = serde_json::json!({"exp": 1_764_521_500, "iat": 1_764_519_700,
            "jti": "8e2d4c6a-1b3f-4d5e-9a7c-0b2d4f6a8c0e", "iss": realm, "aud": realm,
            "sub": "f3a1c9d2-7b4e-4a61-9c0d-2e5f8a7b6c41", "typ": "Refresh", "azp": "authgate",
            "nonce": "Qm9uY2VWYWx1ZUZvclRoZVRlc3RfMTIzNDU2Nzg",
            "session_state": "0f6e2c1a-9b8d-4e7f-a6c5-3d2b1e0f9a8c",
            "scope": "openid email profile", "sid": "0f6e2c1a-9b8d-4e7f-a6c5-3d2b1e0f9a8c"});
        let refresh_header = serde_json::json!({"alg": "HS512", "typ": "JWT",
            "kid": "9c1e3a5b-7d9f-4b1d-8e2f-4a6c8e0b2d4f"});
        let refresh_token = format!("{}.{}.{}", b64(&refresh_header), b64(&refresh), sig(86));

        let cfg = crate::config::load_str_with_env(
            "provider: { issuer_url: 'https://keycloak.example.com/realms/istio', client_id: authgate }\n\
             cookie: { secret: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY }\n\
             upstreams: [ { path: /, url: 'http://127.0.0.1:8080' } ]\n",
            &|_| None,
        )
        .unwrap();
        let codec = Arc::new(SessionCodec::new(cfg.cookie.secret.expose()));
        let store =
            SessionStore::new(&cfg, codec, crate::metrics::Metrics::new().unwrap()).unwrap();
        let empty = http::HeaderMap::new();
        let jar = CookieJar::from_headers(&empty);
        let map = claims.as_object().unwrap().clone();
        let mut sizes = Vec::new();
        for need in [false, true] {
            let session = crate::session::Session {
                identity: Identity {
                    user: "alice@example.com".into(),
                    email: "alice@example.com".into(),
                    preferred_username: "alice".into(),
                    groups: vec!["/admins".into(), "/platform-team".into()],
                }
                .into(),
                sub: "f3a1c9d2-7b4e-4a61-9c0d-2e5f8a7b6c41".into(),
                sid: Some("0f6e2c1a-9b8d-4e7f-a6c5-3d2b1e0f9a8c".into()),
                id_token: Some(crate::domain::Secret::new(id_token.clone())),
                access_token: Some(crate::domain::Secret::new(access_token.clone())),
                refresh_token: Some(crate::domain::Secret::new(refresh_token.clone())),
                refreshed_at: 1_764_519_700,
                expires_at: 1_764_519_700 + 7 * 86_400,
                claims: session_claims(need, map.clone()),
            };
            let lines = store
                .save(&session, None, "app.example.com", &jar)
                .await
                .unwrap();
            let bytes: usize = lines
                .iter()
                .map(|l| "Set-Cookie: ".len() + l.len() + 2)
                .sum();
            sizes.push((lines.len(), bytes));
        }
        let kept = session_claims(true, map.clone()).unwrap();
        let kept_json = serde_json::to_vec(kept.expose()).unwrap().len();
        let ((n0, without), (n1, with)) = (sizes[0], sizes[1]);
        eprintln!(
            "Keycloak session cookie: {without} bytes in {n0} Set-Cookie line(s) without claims, \
             {with} bytes in {n1} with claims kept ({kept_json} bytes of claims JSON; +{})",
            with - without
        );
        // The README's numbers: about 4/3 of the kept claims' JSON, under
        // 1 KB for this token, and the whole session under 8 KB (two
        // 4 KB cookies) either way.
        assert!(with > without, "claims kept: the cookie grows");
        assert!(with - without <= 1024, "+{} bytes", with - without);
        assert!(
            with - without <= kept_json * 4 / 3 + 120,
            "+{} for {kept_json}",
            with - without
        );
        assert!(with <= 8 * 1024 && n1 <= 2, "{with} bytes in {n1} lines");
    }
}
