//! Sessions: what a signed-in browser carries, how it is sealed (`codec`),
//! split across cookies (`chunks`), read back (`cookies`), and where it lives
//! (`store`: in the cookie itself, or in Redis behind a ticket).

pub mod chunks;
pub mod codec;
pub mod cookies;
pub mod redis;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::authz::Identity;

/// A signed-in user. Short field names keep the cookie small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "i")]
    pub identity: Identity,
    #[serde(rename = "s")]
    pub sub: String,
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the tokens were obtained (login or last refresh): `cookie.refresh` counts from here.
    #[serde(rename = "c")]
    pub refreshed_at: u64,
    /// Hard end of the session (`cookie.expire` after login).
    #[serde(rename = "e")]
    pub expires_at: u64,
}

impl Session {
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    pub fn needs_refresh(&self, now: u64, every: Option<std::time::Duration>) -> bool {
        match every {
            Some(d) => {
                self.refresh_token.is_some() && now >= self.refreshed_at.saturating_add(d.as_secs())
            }
            None => false,
        }
    }
}
