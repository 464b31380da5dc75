//! `${VAR}` expansion. It runs on the parsed YAML tree, string by string, so
//! a substituted value containing `#`, `:` or a newline can never change the
//! document's structure (a textual pre-pass would let a secret with `#` cut
//! itself short).

use serde_yaml::Value;

use super::error::Problem;

/// Looks a variable up; `std::env::var` in production, a closure in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why one string could not be expanded. Never carries a value, only names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` names a variable that is not set.
    #[error("environment variable {0} is not set")]
    Missing(String),
    /// `${` without its `}`.
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    /// `${…}` holds something that is not a variable name.
    #[error("invalid environment variable name `{0}` (letters, digits and _ only)")]
    BadName(String),
}

/// Replaces every `${NAME}` in `text`. A `$` not followed by `{` is kept as
/// is (passwords contain `$`); `$${` yields a literal `${`.
pub fn expand_str(text: &str, env: EnvLookup<'_>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(EnvError::Unterminated)?;
            let name = &body[..end];
            if !is_var_name(name) {
                return Err(EnvError::BadName(name.to_string()));
            }
            let value = env(name).ok_or_else(|| EnvError::Missing(name.to_string()))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands every string scalar in the tree, reporting each failure under the
/// dotted key path of the value (`provider.client_secret`, `upstreams[0].url`).
pub fn expand_tree(value: &mut Value, env: EnvLookup<'_>, problems: &mut Vec<Problem>) {
    walk(value, "", env, problems);
}

fn walk(value: &mut Value, path: &str, env: EnvLookup<'_>, problems: &mut Vec<Problem>) {
    match value {
        Value::String(text) => match expand_str(text, env) {
            Ok(expanded) => *text = expanded,
            Err(err) => problems.push(Problem::new(display_path(path), err.to_string())),
        },
        Value::Sequence(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{index}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                walk(item, &child_path(path, key), env, problems);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, env, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// `parent.key`, or `key` at the top.
pub fn child_path(parent: &str, key: &Value) -> String {
    let key = match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".to_string()),
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(root)".to_string()
    } else {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr#t: x".to_string()),
            "EMPTY" => Some(String::new()),
            "PORT" => Some("8080".to_string()),
            _ => None,
        }
    }

    #[test]
    fn present_variable_is_substituted_anywhere_in_the_value() {
        assert_eq!(expand_str("${SECRET}", &env).unwrap(), "s3cr#t: x");
        assert_eq!(
            expand_str("http://h:${PORT}/x", &env).unwrap(),
            "http://h:8080/x"
        );
        assert_eq!(expand_str("${PORT}${PORT}", &env).unwrap(), "80808080");
        assert_eq!(expand_str("a${EMPTY}b", &env).unwrap(), "ab");
    }

    #[test]
    fn missing_variable_is_named() {
        assert_eq!(
            expand_str("x${NOPE}", &env),
            Err(EnvError::Missing("NOPE".into()))
        );
        assert_eq!(
            EnvError::Missing("NOPE".into()).to_string(),
            "environment variable NOPE is not set"
        );
    }

    #[test]
    fn lone_dollars_are_left_alone() {
        assert_eq!(expand_str("pa$$word$", &env).unwrap(), "pa$$word$");
        assert_eq!(
            expand_str("$HOME and $PORT", &env).unwrap(),
            "$HOME and $PORT"
        );
        assert_eq!(expand_str("^/api$", &env).unwrap(), "^/api$");
    }

    #[test]
    fn double_dollar_brace_is_a_literal() {
        assert_eq!(expand_str("$${PORT}", &env).unwrap(), "${PORT}");
    }

    #[test]
    fn malformed_references_are_refused() {
        assert_eq!(expand_str("${PORT", &env), Err(EnvError::Unterminated));
        assert_eq!(
            expand_str("${}", &env),
            Err(EnvError::BadName(String::new()))
        );
        assert_eq!(
            expand_str("${A-B}", &env),
            Err(EnvError::BadName("A-B".into()))
        );
    }

    #[test]
    fn tree_expansion_keeps_structure_and_reports_paths() {
        let mut value: Value =
            serde_yaml::from_str("a:\n  b: ${SECRET}\nlist:\n  - ok\n  - ${NOPE}\nn: 3\n").unwrap();
        let mut problems = Vec::new();
        expand_tree(&mut value, &env, &mut problems);
        assert_eq!(value["a"]["b"].as_str(), Some("s3cr#t: x"));
        assert_eq!(value["n"].as_u64(), Some(3));
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].to_string(),
            "list[1]: environment variable NOPE is not set"
        );
    }
}
