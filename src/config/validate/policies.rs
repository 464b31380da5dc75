//! `policies`: per host / path / method rules (issue 12): names unique,
//! hosts, path regexes (as `skip_auth_routes`), methods, the identity lists,
//! and the CEL `expression`, compiled here once so a syntax error or an
//! unknown variable is a config error, never a request-time surprise.

use std::collections::HashSet;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr};

use super::Validator;
use crate::config::file::PolicyFile;
use crate::config::model::{Policies, Policy, PolicyExpression};

/// The variables an expression may read (CEL's own top-level names).
pub(crate) const VARIABLES: [&str; 3] = ["claims", "identity", "request"];

impl Validator {
    pub(super) fn policies(&mut self, files: &[PolicyFile]) -> Option<Policies> {
        let before = self.problems.len();
        let mut names = HashSet::new();
        let mut list = Vec::with_capacity(files.len());
        for (i, p) in files.iter().enumerate() {
            let key = format!("policies[{i}]");
            let name = self.required_text(&format!("{key}.name"), &p.name);
            if let Some(n) = &name {
                if !names.insert(n.clone()) {
                    self.problem(
                        format!("{key}.name"),
                        format!("duplicate policy name {n:?}"),
                    );
                }
            }
            let hosts = self.policy_hosts(&key, &p.hosts);
            let paths: Option<Vec<_>> = p
                .paths
                .iter()
                .enumerate()
                .map(|(j, re)| self.path_regex(&format!("{key}.paths[{j}]"), re))
                .collect::<Vec<_>>()
                .into_iter()
                .collect();
            let methods = self.policy_methods(&key, &p.methods);
            let allowed_groups =
                self.text_list(&format!("{key}.allowed_groups"), &p.allowed_groups, false);
            let allowed_emails =
                self.text_list(&format!("{key}.allowed_emails"), &p.allowed_emails, true);
            for (j, email) in p.allowed_emails.iter().enumerate() {
                let ok = email
                    .trim()
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'));
                if !ok {
                    self.problem(
                        format!("{key}.allowed_emails[{j}]"),
                        "must be an address with exactly one @",
                    );
                }
            }
            let email_domains =
                self.text_list(&format!("{key}.email_domains"), &p.email_domains, true);
            for (j, d) in p.email_domains.iter().enumerate() {
                if d.contains('@') {
                    self.problem(
                        format!("{key}.email_domains[{j}]"),
                        "must be a domain without @ (e.g. example.com)",
                    );
                }
            }
            let expression = self.policy_expression(&format!("{key}.expression"), &p.expression);
            let restricts = !p.allowed_groups.is_empty()
                || !p.allowed_emails.is_empty()
                || !p.email_domains.is_empty()
                || !p.expression.trim().is_empty();
            if p.skip_auth && restricts {
                // A skipped request has no identity to test: the conditions
                // would silently never apply.
                self.problem(
                    format!("{key}.skip_auth"),
                    "a skip_auth policy cannot also set allowed_groups, allowed_emails, \
                     email_domains or expression (nobody is signed in to test them)",
                );
            }
            if let (
                Some(name),
                Some(hosts),
                Some(paths),
                Some(methods),
                Some(allowed_groups),
                Some(allowed_emails),
                Some(email_domains),
                Some(expression),
            ) = (
                name,
                hosts,
                paths,
                methods,
                allowed_groups,
                allowed_emails,
                email_domains,
                expression,
            ) {
                list.push(Policy {
                    name,
                    hosts,
                    paths,
                    methods,
                    skip_auth: p.skip_auth,
                    allowed_groups,
                    allowed_emails,
                    email_domains,
                    expression,
                });
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let need_claims = list
            .iter()
            .any(|p| p.expression.as_ref().is_some_and(|e| e.uses_claims));
        Some(Policies { list, need_claims })
    }

    /// Exact hosts or `.domain` for its subdomains, lower-cased, no port.
    fn policy_hosts(&mut self, key: &str, hosts: &[String]) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(hosts.len());
        let mut ok = true;
        for (j, h) in hosts.iter().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            let bare = h.strip_prefix('.').unwrap_or(&h);
            let valid = !bare.is_empty()
                && !bare.starts_with('.')
                && bare.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
                });
            if !valid {
                self.problem(
                    format!("{key}.hosts[{j}]"),
                    "must be a host name (prometheus.example.com) or .domain for its subdomains",
                );
                ok = false;
            } else {
                out.push(h);
            }
        }
        ok.then_some(out)
    }

    /// HTTP method tokens, upper-cased.
    fn policy_methods(&mut self, key: &str, methods: &[String]) -> Option<Vec<String>> {
        let mut out = Vec::with_capacity(methods.len());
        let mut ok = true;
        for (j, m) in methods.iter().enumerate() {
            let m = m.trim();
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                self.problem(
                    format!("{key}.methods[{j}]"),
                    "must be an HTTP method (GET, POST, ...)",
                );
                ok = false;
            } else {
                out.push(m.to_ascii_uppercase());
            }
        }
        ok.then_some(out)
    }

    /// Outer `None`: invalid (recorded); `Some(None)`: not set.
    fn policy_expression(&mut self, key: &str, text: &str) -> Option<Option<PolicyExpression>> {
        let source = text.trim();
        if source.is_empty() {
            return Some(None);
        }
        let program = match cel::Program::compile(source) {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string().replace('\n', " ");
                self.problem(key, format!("invalid CEL: {msg}"));
                return None;
            }
        };
        let mut free = Vec::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(unknown) = free.iter().find(|v| !VARIABLES.contains(&v.as_str())) {
            self.problem(
                key,
                format!("unknown variable {unknown:?}: use claims, identity or request"),
            );
            return None;
        }
        Some(Some(PolicyExpression {
            source: source.to_owned(),
            uses_claims: free.iter().any(|v| v == "claims"),
            program: Arc::new(program),
        }))
    }
}

/// Collects the identifiers `e` reads that no comprehension (`all`,
/// `exists`, `map`, `filter`, the `has` expansion) binds.
fn free_variables(e: &cel::IdedExpr, bound: &mut Vec<String>, out: &mut Vec<String>) {
    match &e.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        Expr::Select(s) => free_variables(&s.operand, bound, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_variables(t, bound, out);
            }
            for a in &c.args {
                free_variables(a, bound, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                free_variables(x, bound, out);
            }
        }
        Expr::Map(m) => entries(&m.entries, bound, out),
        Expr::Struct(s) => entries(&s.entries, bound, out),
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            free_variables(&c.loop_cond, bound, out);
            free_variables(&c.loop_step, bound, out);
            free_variables(&c.result, bound, out);
            bound.truncate(depth);
        }
    }
}

fn entries(
    list: &[cel::common::ast::IdedEntryExpr],
    bound: &mut Vec<String>,
    out: &mut Vec<String>,
) {
    for entry in list {
        match &entry.expr {
            EntryExpr::StructField(f) => free_variables(&f.value, bound, out),
            EntryExpr::MapEntry(m) => {
                free_variables(&m.key, bound, out);
                free_variables(&m.value, bound, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<bool, String> {
        let mut v = Validator::default();
        match v.policy_expression("policies[0].expression", src) {
            Some(Some(e)) => Ok(e.uses_claims),
            _ => Err(v.problems.iter().map(|p| p.to_string()).collect()),
        }
    }

    #[test]
    fn expressions_compile_and_report_whether_they_read_claims() {
        assert_eq!(
            check(r#"has(claims.realm_access) && "prom-admin" in claims.realm_access.roles"#),
            Ok(true)
        );
        assert_eq!(
            check(r#"identity.groups.exists(g, g == "admins")"#),
            Ok(false)
        );
        assert_eq!(
            check(r#"request.method == "GET" && [1].all(x, x > 0)"#),
            Ok(false)
        );
    }

    #[test]
    fn syntax_errors_and_unknown_variables_name_the_key() {
        for bad in ["claims.(", "user == 'x'", "identity.email == nobody", "1 +"] {
            let err = check(bad).unwrap_err();
            assert!(err.starts_with("policies[0].expression: "), "{bad}: {err}");
        }
    }
}
