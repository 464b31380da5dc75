//! The `authorization` section: who may sign in (`email-domain`,
//! `authenticated-emails-file`, `allowed-group`/roles), which routes skip
//! authentication or answer 401 (`skip-auth-*`, `api-route`,
//! `skip-auth-preflight`), bearer tokens (`skip-jwt-bearer-tokens`,
//! `extra-jwt-issuers`), and the options authgate refuses to carry.

use serde_yaml::{Mapping, Value as Yaml};

use super::super::options::Refused;
use super::super::MigrateError;
use super::{put, seq, Writer};

/// Builds `authorization`; `emails` are the `authenticated-emails-file`'s
/// lines, `groups` the `allowed-group`s (and Keycloak roles mapped to groups).
///
/// # Errors
/// [`MigrateError::Refused`] as oauth2-proxy would refuse the options: no
/// e-mail rule at all, or a malformed `--extra-jwt-issuers` entry.
pub(super) fn authorization(
    w: &mut Writer<'_>,
    emails: Option<Vec<String>>,
    groups: Vec<String>,
) -> Result<Mapping, MigrateError> {
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
    Ok(authz)
}
