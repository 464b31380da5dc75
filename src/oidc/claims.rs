//! Mapping verified claims onto an [`Identity`] through `provider.claims`.

use serde_json::{Map, Value};

use crate::config::{ClaimPath, Claims};
use crate::domain::Identity;

/// Follows a dotted path (`realm_access.roles`). A claim whose full name
/// contains dots (`https://example.com/groups`) is tried first as one key.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &ClaimPath) -> Option<&'a Value> {
    let joined = path.0.join(".");
    if let Some(v) = claims.get(&joined) {
        return Some(v);
    }
    let (first, rest) = path.0.split_first()?;
    let mut cur = claims.get(first)?;
    for part in rest {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn string(claims: &Map<String, Value>, path: &ClaimPath) -> Option<String> {
    match lookup(claims, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Groups may come as a list or a single string; other members are skipped.
fn groups(claims: &Map<String, Value>, path: &ClaimPath) -> Option<Vec<String>> {
    match lookup(claims, path)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
        ),
        Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

/// Whether the claims lack something the mapping wants and userinfo may add.
pub fn incomplete(claims: &Map<String, Value>, mapping: &Claims) -> bool {
    lookup(claims, &mapping.email).is_none() || lookup(claims, &mapping.groups).is_none()
}

/// The identity the claims describe; `user` falls back to `sub`.
pub fn identity(claims: &Map<String, Value>, mapping: &Claims) -> Identity {
    let email = string(claims, &mapping.email).unwrap_or_default();
    let user = string(claims, &mapping.user)
        .or_else(|| string(claims, &ClaimPath(vec!["sub".into()])))
        .unwrap_or_default();
    Identity {
        user,
        email,
        preferred_username: string(claims, &mapping.preferred_username).unwrap_or_default(),
        groups: groups(claims, &mapping.groups).unwrap_or_default(),
    }
}

/// `email_verified` may be a boolean or, from some IdPs, the string "false".
pub fn email_unverified(claims: &Map<String, Value>) -> bool {
    match claims.get("email_verified") {
        Some(Value::Bool(b)) => !b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ClaimPath {
        ClaimPath(s.split('.').map(str::to_owned).collect())
    }

    fn mapping() -> Claims {
        Claims {
            user: path("email"),
            email: path("email"),
            groups: path("realm_access.roles"),
            preferred_username: path("preferred_username"),
        }
    }

    #[test]
    fn dotted_paths_reach_nested_claims() {
        let claims = serde_json::json!({
            "sub": "123", "email": "a@x.io", "preferred_username": "a",
            "realm_access": {"roles": ["admins", 7, {"x": 1}]}
        });
        let id = identity(claims.as_object().unwrap(), &mapping());
        assert_eq!(id.groups, vec!["admins".to_string(), "7".to_string()]);
        assert_eq!(id.user, "a@x.io");
    }

    #[test]
    fn user_falls_back_to_sub_without_email() {
        let claims = serde_json::json!({"sub": "123"});
        let id = identity(claims.as_object().unwrap(), &mapping());
        assert_eq!(id.user, "123");
        assert_eq!(id.email, "");
        assert!(incomplete(claims.as_object().unwrap(), &mapping()));
    }

    #[test]
    fn claim_names_containing_dots_are_found_whole() {
        let claims = serde_json::json!({"realm_access.roles": "solo"});
        let id = identity(claims.as_object().unwrap(), &mapping());
        assert_eq!(id.groups, vec!["solo".to_string()]);
    }

    #[test]
    fn email_verified_string_false_counts_as_unverified() {
        let c = serde_json::json!({"email_verified": "false"});
        assert!(email_unverified(c.as_object().unwrap()));
        let c = serde_json::json!({"email_verified": true});
        assert!(!email_unverified(c.as_object().unwrap()));
        let c = serde_json::json!({});
        assert!(!email_unverified(c.as_object().unwrap()));
    }
}
