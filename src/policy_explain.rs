//! `authgate policy explain --config F --claims CLAIMS.json METHOD URL`:
//! what the policies decide for one request and one set of claims, printed
//! step by step, through the same functions the running decision uses
//! (`authz::policy`, `authz::rules`, `authz::path`). Reads two files and
//! nothing else: no IdP, no DNS, no network.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::authz::policy::{self, Selection, Subject, Target};
use crate::authz::{path, rules};
use crate::config::{self, Config};
use crate::oidc::claims;

/// Why `policy explain` could not decide (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The configuration did not load: every problem, one per line.
    #[error("{0}")]
    Config(String),
    /// The claims file is unreadable or not a JSON object.
    #[error("{0}: {1}")]
    Claims(String, String),
    /// The URL is not an absolute `http(s)://host/path` URL.
    #[error("URL {0:?}: must be absolute, e.g. https://app.example.com/path")]
    Url(String),
    /// The method is not an HTTP method token.
    #[error("method {0:?}: must be an HTTP method (GET, POST, ...)")]
    Method(String),
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

/// Explains the decision for `method url` with the claims in
/// `claims_file` under the configuration at `config_file`, writing the
/// report to `out`. `Ok(true)`: allowed (or skipped); `Ok(false)`: forbidden.
///
/// # Errors
/// [`ExplainError`] for bad input: the caller exits 2.
pub fn run(
    config_file: &Path,
    claims_file: &Path,
    method: &str,
    url: &str,
    out: &mut dyn Write,
) -> Result<bool, ExplainError> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ExplainError::Method(method.to_owned()));
    }
    let method = method.to_ascii_uppercase();
    let (host, uri) = split_url(url).ok_or_else(|| ExplainError::Url(url.to_owned()))?;
    let cfg = config::load(config_file)
        .map_err(|e| ExplainError::Config(e.lines().collect::<Vec<_>>().join("\n")))?;
    let claims = read_claims(claims_file)?;
    explain(&cfg, &claims, &method, host, uri, out)
}

/// `scheme://authority` and the rest (path and query, `/` at least).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (host, uri) = rest.split_at(end);
    if host.is_empty() || host.contains('@') {
        return None;
    }
    Some((host, if uri.is_empty() { "/" } else { uri }))
}

fn read_claims(file: &Path) -> Result<Map<String, Value>, ExplainError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| ExplainError::Claims(name.clone(), e.to_string()))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ExplainError::Claims(name, "must be a JSON object".into())),
        Err(e) => Err(ExplainError::Claims(name, format!("invalid JSON: {e}"))),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn pass(b: bool) -> &'static str {
    if b {
        "pass"
    } else {
        "FAIL"
    }
}

/// The report for a loaded configuration (see [`run`]).
///
/// # Errors
/// Only when writing to `out` fails.
pub fn explain(
    cfg: &Config,
    claims: &Map<String, Value>,
    method: &str,
    host: &str,
    uri: &str,
    out: &mut dyn Write,
) -> Result<bool, ExplainError> {
    let normalized = path::normalize(uri);
    let target = Target {
        method,
        host,
        uri,
        path: &normalized,
        ambiguous: path::is_ambiguous(uri),
    };
    let identity = claims::identity(claims, &cfg.provider.claims);
    writeln!(out, "request: {method} {host}{uri}")?;
    writeln!(
        out,
        "  host {}, path {}{}",
        target.hostname(),
        target.path,
        if target.ambiguous {
            " (ambiguous: matched conservatively, no skip applies)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "identity: user={:?} email={:?} preferred_username={:?} groups={:?}",
        identity.user, identity.email, identity.preferred_username, identity.groups
    )?;
    let skip_route = !target.ambiguous
        && path::route_matches(&cfg.authorization.skip_auth_routes, method, target.path);
    writeln!(out, "skip_auth_routes: matched: {}", yes(skip_route))?;
    if skip_route {
        writeln!(
            out,
            "decision: allowed (skipped by skip_auth_routes: no authentication)"
        )?;
        return Ok(true);
    }
    let selection = policy::select(&cfg.policies.list, &target);
    let applying: Vec<&str> = match &selection {
        Selection::None => vec![],
        Selection::Skip(p) => vec![p.name.as_str()],
        Selection::Apply(list) => list.iter().map(|p| p.name.as_str()).collect(),
    };
    // What the running decision sees: a session (or a bearer token's
    // grant) keeps the claims only when an expression reads them, and never
    // those that only verify the token (`exp`, `nonce`, ...).
    let kept = policy::session_claims(cfg.policies.need_claims, claims.clone());
    let who = Subject {
        identity: &identity,
        claims: kept.as_ref().map(|c| c.expose()),
    };
    for (i, p) in cfg.policies.list.iter().enumerate() {
        let parts = policy::match_parts(p, &target);
        let state = if applying.contains(&p.name.as_str()) {
            "matched, applies"
        } else if parts.all() && p.skip_auth && target.ambiguous {
            "matched, but a skip_auth policy never applies to an ambiguous target"
        } else if parts.all() {
            "matched, but an earlier policy applies"
        } else {
            "not matched"
        };
        writeln!(out, "policies[{i}] {}: {state}", p.name)?;
        writeln!(
            out,
            "  hosts: {}  methods: {}  paths: {}{}",
            yes(parts.host),
            yes(parts.method),
            yes(parts.path),
            if p.skip_auth { "  (skip_auth)" } else { "" }
        )?;
        for c in policy::evaluate(p, who, &target) {
            let note = c.note.map(|n| format!(" ({n})")).unwrap_or_default();
            writeln!(out, "  {}: {}{note}", c.condition, pass(c.passed))?;
        }
    }
    let list = match selection {
        Selection::Skip(p) => {
            writeln!(
                out,
                "decision: allowed (skipped by policy {}: no authentication)",
                p.name
            )?;
            return Ok(true);
        }
        Selection::None => vec![],
        Selection::Apply(list) => list,
    };
    let global = &cfg.authorization;
    let email_ok = rules::email_allowed(&identity.email, global);
    let groups_ok = rules::groups_allowed(&identity.groups, &global.allowed_groups);
    writeln!(
        out,
        "authorization: email_domains/allowed_emails: {}  allowed_groups: {}",
        pass(email_ok),
        pass(groups_ok)
    )?;
    if !(email_ok && groups_ok) {
        writeln!(out, "decision: forbidden (by authorization)")?;
        return Ok(false);
    }
    if let Some(p) = policy::first_failing(&list, who, &target) {
        writeln!(out, "decision: forbidden (by policy {})", p.name)?;
        return Ok(false);
    }
    match list.first() {
        Some(p) => writeln!(out, "decision: allowed (policy {})", p.name)?,
        None => writeln!(
            out,
            "decision: allowed (no policy matched: authorization alone)"
        )?,
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_see_the_claims_the_decision_keeps() {
        let yaml = "
provider: { issuer_url: 'https://idp.example.com', client_id: a }
cookie: { secret: 0123456789abcdef }
upstreams: [ { path: /, url: 'http://127.0.0.1:8080' } ]
authorization: { email_domains: ['*'] }
policies:
  - name: fresh
    expression: 'has(claims.auth_time)'
  - name: roles
    paths: ['^/admin']
    expression: '\"admin\" in claims.realm_access.roles'
";
        let cfg = config::load_str_with_env(yaml, &|_| None).unwrap();
        let claims = serde_json::json!({
            "sub": "a", "email": "a@example.com", "auth_time": 1, "nonce": "n",
            "realm_access": {"roles": ["admin"]}
        });
        let claims = claims.as_object().unwrap();
        let mut out = Vec::new();
        // `auth_time` is not kept in sessions: the policy fails, as it
        // would on a real request.
        let allowed = explain(&cfg, claims, "GET", "h", "/x", &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!allowed, "{text}");
        assert!(
            text.contains("decision: forbidden (by policy fresh)"),
            "{text}"
        );
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert_eq!(
            split_url("https://prom.example.com/api/v1/admin/x?q=1"),
            Some(("prom.example.com", "/api/v1/admin/x?q=1"))
        );
        assert_eq!(split_url("http://h:8080"), Some(("h:8080", "/")));
        for bad in ["/x", "ftp://h/x", "https:///x", "https://u@h/x", "h/x"] {
            assert_eq!(split_url(bad), None, "{bad}");
        }
    }
}
