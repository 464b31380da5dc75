//! Sessions: what a signed-in browser carries, how it is sealed (`codec`),
//! split across cookies (`chunks`), read back (`cookies`), and where it lives
//! (`store`: in the cookie itself, or in Redis behind a ticket).

pub mod chunks;
pub mod codec;
pub mod cookies;
pub mod open_cache;
pub mod redis;
pub mod store;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Identity, Secret};

/// A signed-in user: what the sealed session cookie (or the Redis entry
/// behind its ticket) holds. Short field names keep the cookie small.
///
/// The tokens are [`Secret`]s: they serialise as plain strings (the session
/// format is unchanged) but `Debug` prints `[redacted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Who the user is, as the IdP's claims mapped it at login or refresh.
    /// Shared: a cached session hands the same identity to every request.
    #[serde(rename = "i")]
    pub identity: Arc<Identity>,
    /// The ID token's `sub` (kept across refreshes that omit it).
    #[serde(rename = "s")]
    pub sub: String,
    /// The ID token's `sid`, matched by back-channel logout (OIDC
    /// Back-Channel Logout 1.0 §2.4).
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The raw ID token: `Authorization: Bearer` upstream when
    /// `pass_authorization`, and the `id_token_hint` at sign-out.
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<Secret<String>>,
    /// The access token: `X-Forwarded-Access-Token` upstream when
    /// `pass_access_token`.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Secret<String>>,
    /// The refresh token, redeemed when `cookie.refresh` is due.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Secret<String>>,
    /// When the tokens were obtained (login or last refresh): `cookie.refresh` counts from here.
    #[serde(rename = "c")]
    pub refreshed_at: u64,
    /// Hard end of the session (`cookie.expire` after login).
    #[serde(rename = "e")]
    pub expires_at: u64,
    /// The verified claims, kept only when a `policies[].expression` reads
    /// `claims` (see `Gate::session_claims`); redacted in `Debug`.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Secret<serde_json::Map<String, serde_json::Value>>>,
}

impl Session {
    /// Whether the session's hard end (`expires_at`, Unix seconds) is at or
    /// before `now` (Unix seconds).
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// Whether the tokens are due for a refresh at `now` (Unix seconds):
    /// `every` (`cookie.refresh`) has passed since `refreshed_at` and there
    /// is a refresh token to redeem. `None` never refreshes.
    pub fn needs_refresh(&self, now: u64, every: Option<Duration>) -> bool {
        refresh_due(self.refresh_token.is_some(), self.refreshed_at, now, every)
    }

    /// Decodes a session for one request, copying out only the tokens
    /// `uses` says will be read: most requests need the identity alone, and
    /// the tokens are most of the bytes. A session due for refresh at `now`
    /// keeps every token (the refreshed one is saved from it).
    ///
    /// # Errors
    /// The JSON is not a [`Session`]: exactly the inputs that
    /// `serde_json::from_slice::<Session>` refuses.
    pub fn decode_for(json: &[u8], uses: TokenUse, now: u64) -> serde_json::Result<Session> {
        let v: SessionView<'_> = serde_json::from_slice(json)?;
        let all = refresh_due(v.refresh_token.is_some(), v.refreshed_at, now, uses.refresh);
        let keep = |t: Option<Text<'_>>, wanted: bool| {
            t.filter(|_| all || wanted)
                .map(|t| Secret::new(t.0.into_owned()))
        };
        Ok(Session {
            identity: Arc::new(v.identity),
            sub: v.sub,
            sid: v.sid,
            id_token: keep(v.id_token, uses.id_token),
            access_token: keep(v.access_token, uses.access_token),
            refresh_token: keep(v.refresh_token, false),
            refreshed_at: v.refreshed_at,
            expires_at: v.expires_at,
            claims: v.claims,
        })
    }
}

fn refresh_due(
    has_refresh_token: bool,
    refreshed_at: u64,
    now: u64,
    every: Option<Duration>,
) -> bool {
    match every {
        Some(d) => has_refresh_token && now >= refreshed_at.saturating_add(d.as_secs()),
        None => false,
    }
}

/// Which tokens a request-path load must keep (see [`Session::decode_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenUse {
    /// `headers.pass_authorization`: the ID token goes upstream.
    pub id_token: bool,
    /// `headers.pass_access_token`: the access token goes upstream.
    pub access_token: bool,
    /// `cookie.refresh`: when a session is due, all tokens are kept.
    pub refresh: Option<Duration>,
}

/// [`Session`]'s wire form with the tokens borrowed from the JSON input
/// (same field names and rules, so it accepts exactly what `Session` does).
#[derive(Deserialize)]
struct SessionView<'a> {
    #[serde(rename = "i")]
    identity: Identity,
    #[serde(rename = "s")]
    sub: String,
    #[serde(rename = "d", default)]
    sid: Option<String>,
    #[serde(rename = "t", default, borrow)]
    id_token: Option<Text<'a>>,
    #[serde(rename = "a", default, borrow)]
    access_token: Option<Text<'a>>,
    #[serde(rename = "r", default, borrow)]
    refresh_token: Option<Text<'a>>,
    #[serde(rename = "c")]
    refreshed_at: u64,
    #[serde(rename = "e")]
    expires_at: u64,
    #[serde(rename = "x", default)]
    claims: Option<Secret<serde_json::Map<String, serde_json::Value>>>,
}

/// A JSON string, borrowed unless it had escapes to undo.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            identity: Identity {
                user: "alice@example.com".into(),
                email: "alice@example.com".into(),
                preferred_username: "alice".into(),
                groups: vec!["admins".into()],
            }
            .into(),
            sub: "alice".into(),
            sid: Some("sid-1".into()),
            id_token: Some(Secret::new("id.token.\"escaped\"".into())),
            access_token: Some(Secret::new("access".into())),
            refresh_token: Some(Secret::new("refresh".into())),
            refreshed_at: 1000,
            expires_at: 9000,
            claims: None,
        }
    }

    const NOTHING: TokenUse = TokenUse {
        id_token: false,
        access_token: false,
        refresh: None,
    };

    #[test]
    fn debug_shows_no_token() {
        let printed = format!("{:?}", session());
        // Debug quotes strings: a leaked token would show as `"access"`.
        for token in ["id.token", "\"access\"", "\"refresh\""] {
            assert!(!printed.contains(token), "{token} in {printed}");
        }
        assert!(printed.contains("alice@example.com"), "{printed}");
        assert_eq!(printed.matches("[redacted]").count(), 3, "{printed}");
    }

    #[test]
    fn tokens_serialise_as_plain_strings() {
        let json = serde_json::to_value(session()).unwrap();
        assert_eq!(json["t"], "id.token.\"escaped\"");
        assert_eq!(json["a"], "access");
        assert_eq!(json["r"], "refresh");
        let back: Session = serde_json::from_value(json).unwrap();
        assert_eq!(back, session());
    }

    #[test]
    fn decode_for_drops_tokens_no_one_reads() {
        let json = serde_json::to_vec(&session()).unwrap();
        let got = Session::decode_for(&json, NOTHING, 2000).unwrap();
        let want = Session {
            id_token: None,
            access_token: None,
            refresh_token: None,
            ..session()
        };
        assert_eq!(got, want);
    }

    #[test]
    fn decode_for_keeps_header_tokens_including_escaped_ones() {
        let json = serde_json::to_vec(&session()).unwrap();
        let uses = TokenUse {
            id_token: true,
            access_token: true,
            ..NOTHING
        };
        let got = Session::decode_for(&json, uses, 2000).unwrap();
        assert_eq!(got.id_token, session().id_token);
        assert_eq!(got.access_token, session().access_token);
        assert_eq!(got.refresh_token, None);
    }

    #[test]
    fn decode_for_keeps_everything_when_a_refresh_is_due() {
        let json = serde_json::to_vec(&session()).unwrap();
        let uses = TokenUse {
            refresh: Some(Duration::from_secs(500)),
            ..NOTHING
        };
        assert_eq!(Session::decode_for(&json, uses, 1500).unwrap(), session());
        let early = Session::decode_for(&json, uses, 1499).unwrap();
        assert_eq!(early.refresh_token, None);
        assert!(!early.needs_refresh(1499, uses.refresh));
    }

    #[test]
    fn decode_for_accepts_and_refuses_what_session_does() {
        for json in [
            r#"{"i":{"user":"u","email":"","preferred_username":"","groups":[]},"s":"x","c":1,"e":2}"#,
            r#"{"i":{"user":"u","email":"","preferred_username":"","groups":[]},"s":"x","t":null,"r":"\u0041","c":1,"e":2,"z":0}"#,
            r#"{"i":{"user":"u","email":"","preferred_username":"","groups":[]},"s":"x","t":1,"c":1,"e":2}"#,
            r#"{"i":{"user":"u","email":"","preferred_username":"","groups":[]},"s":"x","c":1}"#,
            r#"{"i":{"user":"u","email":"","preferred_username":"","groups":[]},"s":"x","t":"a","t":"b","c":1,"e":2}"#,
            "not json",
        ] {
            let full = serde_json::from_str::<Session>(json).ok();
            let all = TokenUse {
                id_token: true,
                access_token: true,
                refresh: Some(Duration::ZERO),
            };
            assert_eq!(
                Session::decode_for(json.as_bytes(), all, 10).ok(),
                full,
                "{json}"
            );
        }
    }
}
