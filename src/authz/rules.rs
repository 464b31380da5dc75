//! Who may pass once authenticated: `authorization.email_domains`,
//! `allowed_emails` and `allowed_groups` (and a policy's own lists).
//!
//! Semantics follow oauth2-proxy: an address passes when `email_domains`
//! holds `*` or its domain, or when `allowed_emails` holds it; then, if
//! `allowed_groups` is non-empty, the user must be in one of them. Unlike
//! oauth2-proxy's suffix test (advisory: `a@evil.com@corp.com` passed for
//! `corp.com`), the address is split on its last `@` and addresses with two
//! `@` are refused outright, even under `*`.
//!
//! Pure, non-allocating for ASCII or already lower-case input, never panics.

use std::borrow::Cow;

use crate::authz::Identity;
use crate::config::Authorization;

/// The identity passes the email and group rules.
///
/// Called by the decision (all front ends) after a session or bearer token
/// is verified, and by `/oauth2/callback` before a session is created;
/// `false` means 403, never a login redirect.
pub fn authorized(identity: &Identity, rules: &Authorization) -> bool {
    email_allowed(&identity.email, rules) && groups_allowed(&identity.groups, &rules.allowed_groups)
}

/// The address passes `email_domains` / `allowed_emails`.
///
/// An empty address never passes, even with `email_domains: ["*"]` (as in
/// oauth2-proxy): configure the IdP to send `email`, or map
/// `provider.claims.email` to a claim it does send. Malformed addresses
/// (no `@`, two `@`, empty local part or domain) never pass.
pub fn email_allowed(email: &str, rules: &Authorization) -> bool {
    email_in(email, &rules.email_domains, &rules.allowed_emails)
}

/// The address's domain is in `domains` (lower-cased; `*` = any) or the
/// address is in `emails` (lower-cased), with [`email_allowed`]'s rules for
/// malformed addresses. A policy's `email_domains` / `allowed_emails` use it.
pub fn email_in(email: &str, domains: &[String], emails: &[String]) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return false;
    }
    let domain = lower(domain);
    let domain_ok = domains.iter().any(|d| d == "*" || *d == *domain);
    domain_ok || {
        let email = lower(email);
        emails.iter().any(|e| *e == *email)
    }
}

/// The user is in one of `allowed` (exact, case-sensitive, as group names
/// from IdPs are); an empty `allowed` admits everyone.
pub fn groups_allowed(groups: &[String], allowed: &[String]) -> bool {
    allowed.is_empty() || groups.iter().any(|g| allowed.contains(g))
}

/// Lower-cased like the config side (`str::to_lowercase`), borrowing when
/// nothing changes.
fn lower(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_uppercase) {
        Cow::Owned(s.to_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(domains: &[&str], emails: &[&str], groups: &[&str]) -> Authorization {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Authorization {
            email_domains: owned(domains),
            allowed_emails: owned(emails),
            allowed_groups: owned(groups),
            skip_auth_routes: Vec::new(),
            api_routes: Vec::new(),
            skip_preflight: false,
            bearer_tokens: true,
            extra_jwt_issuers: Vec::new(),
        }
    }

    fn identity(email: &str, groups: &[&str]) -> Identity {
        Identity {
            user: "u".into(),
            email: email.into(),
            preferred_username: "u".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn wildcard_domain_admits_any_well_formed_address() {
        let r = rules(&["*"], &[], &[]);
        assert!(email_allowed("alice@example.com", &r));
        assert!(email_allowed("Bob@Anything.Org", &r));
    }

    #[test]
    fn malformed_addresses_are_refused_even_under_wildcard() {
        let r = rules(&["*", "corp.com"], &["a@evil.com@corp.com"], &[]);
        for email in [
            "",
            "alice",
            "@corp.com",
            "alice@",
            "a@evil.com@corp.com",
            "@",
            "a@@corp.com",
        ] {
            assert!(!email_allowed(email, &r), "{email:?}");
        }
    }

    #[test]
    fn domain_must_match_exactly_ignoring_case() {
        let r = rules(&["corp.com"], &[], &[]);
        assert!(email_allowed("alice@corp.com", &r));
        assert!(email_allowed("Alice@CORP.com", &r));
        assert!(!email_allowed("alice@sub.corp.com", &r));
        assert!(!email_allowed("alice@evilcorp.com", &r));
        assert!(!email_allowed("alice@corp.com.evil", &r));
        assert!(!email_allowed("corp.com@evil.com", &r));
    }

    #[test]
    fn allowed_email_admits_address_outside_domains() {
        let r = rules(&["corp.com"], &["contractor@gmail.com"], &[]);
        assert!(email_allowed("contractor@gmail.com", &r));
        assert!(email_allowed("Contractor@GMail.com", &r));
        assert!(!email_allowed("other@gmail.com", &r));
        assert!(!email_allowed("xcontractor@gmail.com", &r));
    }

    #[test]
    fn no_domains_and_no_emails_admits_nobody() {
        let r = rules(&[], &[], &[]);
        assert!(!email_allowed("alice@corp.com", &r));
    }

    #[test]
    fn non_ascii_case_is_folded_like_the_config() {
        let r = rules(&["bücher.de"], &["ärger@x.de"], &[]);
        assert!(email_allowed("a@BÜCHER.de", &r));
        assert!(email_allowed("ÄRGER@x.de", &r));
    }

    #[test]
    fn lower_borrows_when_already_lower_case() {
        assert!(matches!(lower("alice@corp.com"), Cow::Borrowed(_)));
        assert_eq!(lower("Alice@Corp.com"), "alice@corp.com");
    }

    #[test]
    fn groups_empty_allowed_admits_everyone() {
        assert!(groups_allowed(&[], &[]));
        assert!(groups_allowed(&["x".into()], &[]));
    }

    #[test]
    fn groups_need_an_exact_overlap() {
        let allowed = vec!["admins".to_string(), "devs".to_string()];
        assert!(groups_allowed(&["users".into(), "devs".into()], &allowed));
        assert!(!groups_allowed(&["users".into()], &allowed));
        assert!(!groups_allowed(
            &["Admins".into(), "admin".into()],
            &allowed
        ));
        assert!(!groups_allowed(&[], &allowed));
    }

    #[test]
    fn authorized_needs_both_email_and_group() {
        let r = rules(&["example.com"], &[], &["admins"]);
        assert!(authorized(
            &identity("alice@example.com", &["admins", "devs"]),
            &r
        ));
        assert!(!authorized(&identity("bob@example.com", &["users"]), &r));
        assert!(!authorized(&identity("eve@evil.com", &["admins"]), &r));
        assert!(!authorized(&identity("", &["admins"]), &r));
    }
}
