//! The demo's fixed accounts and their password check.

use serde_json::{json, Value};
use subtle::ConstantTimeEq as _;

/// One fixed account. `carol` exists for tests of the unverified-email refusal
/// and is deliberately not advertised on the login page.
pub(super) struct User {
    username: &'static str,
    password: &'static str,
    sub: &'static str,
    name: &'static str,
    email: &'static str,
    email_verified: bool,
    groups: &'static [&'static str],
}

const USERS: &[User] = &[
    User {
        username: "alice",
        password: "alice",
        sub: "demo-user-alice",
        name: "Alice Example",
        email: "alice@example.com",
        email_verified: true,
        groups: &["admins", "devs"],
    },
    User {
        username: "bob",
        password: "bob",
        sub: "demo-user-bob",
        name: "Bob Example",
        email: "bob@example.com",
        email_verified: true,
        groups: &["users"],
    },
    User {
        username: "carol",
        password: "carol",
        sub: "demo-user-carol",
        name: "Carol Example",
        email: "carol@example.com",
        email_verified: false,
        groups: &["admins"],
    },
];

fn find_user(username: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.username == username)
}

pub(super) fn find_user_by_sub(sub: &str) -> Option<&'static User> {
    USERS.iter().find(|u| u.sub == sub)
}

/// The account `username` names, if `password` is its password (compared in
/// constant time).
pub(super) fn check_password(username: &str, password: &str) -> Option<&'static User> {
    let user = find_user(username)?;
    bool::from(user.password.as_bytes().ct_eq(password.as_bytes())).then_some(user)
}

impl User {
    /// Claims shared by the ID token, the access token and userinfo.
    pub(super) fn profile_claims(&self, into: &mut serde_json::Map<String, Value>) {
        into.insert("sub".into(), json!(self.sub));
        into.insert("email".into(), json!(self.email));
        into.insert("email_verified".into(), json!(self.email_verified));
        into.insert("preferred_username".into(), json!(self.username));
        into.insert("name".into(), json!(self.name));
        into.insert("groups".into(), json!(self.groups));
    }
}
