//! `authorization`: e-mail domains and addresses, groups, skip-auth and API
//! routes (compiled regexes), and extra JWT issuers.

use regex::Regex;

use super::Validator;
use crate::config::file::AuthorizationFile;
use crate::config::model::{Authorization, ExtraIssuer, Route};

impl Validator {
    pub(super) fn authorization(&mut self, a: AuthorizationFile) -> Option<Authorization> {
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

    pub(super) fn path_regex(&mut self, key: &str, pattern: &str) -> Option<Regex> {
        if pattern.is_empty() {
            self.problem(key, "regex must not be empty (it would match every path)");
            return None;
        }
        Regex::new(pattern)
            .map_err(|err| self.problem(key, format!("invalid regex: {}", regex_error_line(&err))))
            .ok()
    }
}

/// The one informative line of a regex error (its Display spans several
/// lines with a caret diagram, and `check` prints one line per problem).
fn regex_error_line(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_string)
}
