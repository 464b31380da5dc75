//! Plain domain types at the bottom of the house: who a request is
//! ([`Identity`]), what a back-channel logout names ([`LogoutTarget`]),
//! values that must never be printed ([`Secret`]) and the one source of
//! random tokens ([`random`]). Every other module may import these; this
//! module imports none of authgate's own.

pub mod random;
mod secret;

use serde::{Deserialize, Serialize};

pub use secret::Secret;

/// Who the request is, as the upstream will be told.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The configured user claim (`claims.user`), falling back to `sub`.
    pub user: String,
    /// The e-mail address; empty when the IdP has none.
    pub email: String,
    /// `preferred_username` (or the configured claim); may be empty.
    pub preferred_username: String,
    /// Group names from the configured groups claim, in the IdP's order.
    pub groups: Vec<String>,
}

/// What a back-channel logout token names (OpenID Connect Back-Channel
/// Logout 1.0 §2.4: `sid`, `sub`, or both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutTarget {
    /// The IdP session id (`sid` claim).
    pub sid: Option<String>,
    /// The subject (`sub` claim).
    pub sub: Option<String>,
}
