//! Identity headers: which client headers are stripped (every name that
//! could be mistaken for one of ours, whatever its case or `_`/`-` spelling)
//! and which are set from a [`Grant`].

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;

use super::Grant;
use crate::config::{Headers, IdentityClaim};
use crate::domain::Identity;

/// At most this many identities' built header values are remembered
/// (each a few hundred bytes: about 2 MiB at most).
const MAX_BUILT: usize = 4096;

/// The header `pass_access_token` sends the access token in.
pub const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-forwarded-access-token");

/// One identity header an allow sets upstream.
#[derive(Debug, Clone)]
pub struct IdentityValue {
    /// The header's name (a clone shares its bytes: no copy per request).
    pub name: HeaderName,
    /// The value.
    pub value: HeaderValue,
}

/// The headers an allow sets: the identity's (built once per shared
/// identity, see [`IdentityHeaders::values`]), then the grant's tokens and
/// signed assertion.
#[derive(Debug, Clone)]
pub struct IdentitySet {
    identity: Arc<[IdentityValue]>,
    extra: Vec<IdentityValue>,
}

impl IdentitySet {
    /// No header at all (a skip).
    pub fn empty() -> Self {
        IdentitySet {
            identity: Arc::from(Vec::new()),
            extra: Vec::new(),
        }
    }

    /// Every header, in order.
    pub fn iter(&self) -> impl Iterator<Item = &IdentityValue> {
        self.identity.iter().chain(&self.extra)
    }

    /// Every header as a `(name, value)` pair (clones share their bytes).
    pub fn pairs(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        self.iter().map(|h| (h.name.clone(), h.value.clone()))
    }

    /// How many headers.
    pub fn len(&self) -> usize {
        self.identity.len() + self.extra.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The identity header policy built once from `headers` in the config.
pub struct IdentityHeaders {
    cfg: Headers,
    /// Lower-case, `-`-separated spellings of every protected name.
    protected: Vec<String>,
    /// Every name [`IdentityHeaders::values`] may set, in order.
    all: Arc<[HeaderName]>,
    /// `assertion.header`, when the signed assertion is on.
    assertion: Option<HeaderName>,
    /// Values built before, by the address of a shared identity. The
    /// `Weak` keeps that address from being reused by another identity
    /// while the entry exists, and tells a live entry from a stale one.
    built: Mutex<HashMap<usize, Built>>,
}

/// A shared identity's values, and the identity (see `built`).
type Built = (Weak<Identity>, Arc<[IdentityValue]>);

/// `X_Forwarded_User` and `x-forwarded-user` are the same header to many
/// upstreams (nginx, WSGI, CGI): compare folded.
fn folded_eq(a: &str, folded: &str) -> bool {
    a.len() == folded.len()
        && a.bytes().zip(folded.bytes()).all(|(x, y)| {
            let x = if x == b'_' {
                b'-'
            } else {
                x.to_ascii_lowercase()
            };
            x == y
        })
}

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

impl IdentityHeaders {
    /// The policy for the `headers` section.
    pub fn new(cfg: &Headers) -> Self {
        let mut protected: Vec<String> =
            cfg.identity.iter().map(|h| fold(h.name.as_str())).collect();
        if cfg.pass_access_token {
            protected.push(ACCESS_TOKEN.as_str().to_owned());
        }
        if cfg.pass_authorization {
            protected.push("authorization".to_owned());
        }
        protected.sort();
        protected.dedup();
        let mut all: Vec<HeaderName> = cfg.identity.iter().map(|h| h.name.clone()).collect();
        if cfg.pass_authorization {
            all.push(http::header::AUTHORIZATION);
        }
        if cfg.pass_access_token {
            all.push(ACCESS_TOKEN);
        }
        all.dedup();
        IdentityHeaders {
            cfg: cfg.clone(),
            protected,
            all: all.into(),
            assertion: None,
            built: Mutex::default(),
        }
    }

    /// Adds `assertion.header` (when on): protected like the identity
    /// headers (a client-sent one, in any spelling, never reaches the
    /// upstream) and set from [`Grant::assertion`].
    pub fn with_assertion(mut self, name: Option<&HeaderName>) -> Self {
        if let Some(name) = name {
            let folded = fold(name.as_str());
            if !self.protected.contains(&folded) {
                self.protected.push(folded);
            }
            let mut all = self.all.to_vec();
            if !all.contains(name) {
                all.push(name.clone());
            }
            self.all = all.into();
            self.assertion = Some(name.clone());
        }
        self
    }

    /// Whether a client-sent header must be removed before forwarding.
    pub fn is_protected(&self, name: &str) -> bool {
        self.protected.iter().any(|p| folded_eq(name, p))
    }

    /// The configured identity headers, in order (for ext_authz removals).
    pub fn names(&self) -> impl Iterator<Item = &HeaderName> {
        self.cfg.identity.iter().map(|h| &h.name)
    }

    /// Headers to send upstream for this grant. Empty values are not sent
    /// (and ext_authz lists them for removal instead).
    ///
    /// An identity shared with a cache (an opened session, a verified
    /// token: the same `Arc` for every request it serves) has its values
    /// built once and handed out as shared references after that.
    pub fn values(&self, grant: &Grant) -> IdentitySet {
        let identity = if Arc::strong_count(&grant.identity) > 1 {
            self.built_for(&grant.identity)
        } else {
            Arc::from(self.build(&grant.identity))
        };
        IdentitySet {
            identity,
            extra: self.grant_values(grant),
        }
    }

    /// [`IdentityHeaders::build`] once per shared identity.
    fn built_for(&self, id: &Arc<Identity>) -> Arc<[IdentityValue]> {
        let key = Arc::as_ptr(id) as usize;
        if let Some((_, values)) = self.built.lock().get(&key) {
            return values.clone();
        }
        let values: Arc<[IdentityValue]> = Arc::from(self.build(id));
        let mut built = self.built.lock();
        if built.len() >= MAX_BUILT {
            built.retain(|_, (w, _)| w.strong_count() > 0);
            if built.len() >= MAX_BUILT {
                built.clear();
            }
        }
        built.insert(key, (Arc::downgrade(id), values.clone()));
        values
    }

    /// The configured identity headers' values for `id`.
    fn build(&self, id: &Identity) -> Vec<IdentityValue> {
        let mut out = Vec::with_capacity(self.cfg.identity.len());
        // Each field's value is built once and shared (a `HeaderValue` clone
        // is a reference count): the default set sends every field twice,
        // as `X-Auth-Request-*` and as `X-Forwarded-*`.
        let mut built: [Option<Option<HeaderValue>>; 4] = [None, None, None, None];
        for h in &self.cfg.identity {
            let (slot, bytes): (usize, fn(&crate::domain::Identity) -> Option<HeaderValue>) =
                match h.claim {
                    IdentityClaim::User => {
                        (0, |id| HeaderValue::from_bytes(id.user.as_bytes()).ok())
                    }
                    IdentityClaim::Email => {
                        (1, |id| HeaderValue::from_bytes(id.email.as_bytes()).ok())
                    }
                    IdentityClaim::PreferredUsername => (2, |id| {
                        HeaderValue::from_bytes(id.preferred_username.as_bytes()).ok()
                    }),
                    IdentityClaim::Groups => (3, |id| {
                        (!id.groups.is_empty())
                            .then(|| HeaderValue::from_bytes(id.groups.join(",").as_bytes()).ok())
                            .flatten()
                    }),
                };
            let value = built[slot].get_or_insert_with(|| bytes(id)).clone();
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                out.push(IdentityValue {
                    name: h.name.clone(),
                    value,
                });
            }
        }
        out
    }

    /// The tokens (when passed) and the signed assertion.
    fn grant_values(&self, grant: &Grant) -> Vec<IdentityValue> {
        let mut out = Vec::new();
        if self.cfg.pass_authorization {
            if let Some(v) = grant
                .id_token
                .as_ref()
                .map(|t| &**t.expose())
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            {
                out.push(IdentityValue {
                    name: http::header::AUTHORIZATION,
                    value: v,
                });
            }
        }
        if self.cfg.pass_access_token {
            if let Some(v) = grant
                .access_token
                .as_ref()
                .map(|t| &**t.expose())
                .and_then(|t| HeaderValue::from_str(t).ok())
            {
                out.push(IdentityValue {
                    name: ACCESS_TOKEN,
                    value: v,
                });
            }
        }
        if let (Some(name), Some(v)) = (&self.assertion, &grant.assertion) {
            out.push(IdentityValue {
                name: name.clone(),
                value: v.clone(),
            });
        }
        out
    }

    /// Every name `values` may set: what ext_authz must remove when unset.
    pub fn all_names(&self) -> Arc<[HeaderName]> {
        self.all.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(identity: &Arc<Identity>) -> Grant {
        Grant {
            identity: identity.clone(),
            id_token: None,
            access_token: None,
            set_cookies: Vec::new(),
            sub: Arc::from(""),
            claims: None,
            assertion: None,
        }
    }

    fn shown(set: &IdentitySet) -> Vec<(String, String)> {
        set.iter()
            .map(|h| (h.name.to_string(), h.value.to_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn a_shared_identity_has_its_values_built_once_and_each_identity_its_own() {
        let cfg = Headers {
            pass_authorization: false,
            pass_access_token: false,
            identity: ["x-forwarded-user", "x-forwarded-groups"]
                .into_iter()
                .zip([IdentityClaim::User, IdentityClaim::Groups])
                .map(|(n, claim)| crate::config::IdentityHeader {
                    name: HeaderName::from_static(n),
                    claim,
                })
                .collect(),
        };
        let h = IdentityHeaders::new(&cfg);
        let who = |user: &str| {
            Arc::new(Identity {
                user: user.into(),
                groups: vec![format!("{user}-team"), "all".into()],
                ..Identity::default()
            })
        };
        // Held by a cache as well: built once, then shared.
        let alice = who("alice");
        let cached = alice.clone();
        let first = h.values(&grant(&alice));
        let second = h.values(&grant(&alice));
        assert!(Arc::ptr_eq(&first.identity, &second.identity));
        let want = |user: &str| {
            vec![
                ("x-forwarded-user".to_owned(), user.to_owned()),
                ("x-forwarded-groups".to_owned(), format!("{user}-team,all")),
            ]
        };
        assert_eq!(shown(&second), want("alice"));
        drop((first, second, alice, cached));
        // Another shared identity gets its own values, whatever address
        // it was given.
        let bob = who("bob");
        let _cached = bob.clone();
        assert_eq!(shown(&h.values(&grant(&bob))), want("bob"));
        assert_eq!(shown(&h.values(&grant(&bob))), want("bob"));
        // One held by nobody else is built and not remembered.
        let carol = grant(&who("carol"));
        assert_eq!(shown(&h.values(&carol)), want("carol"));
        assert_eq!(h.built.lock().len(), 2);
    }

    #[test]
    fn underscore_and_case_variants_are_protected() {
        let cfg = Headers {
            pass_authorization: false,
            pass_access_token: true,
            identity: vec![crate::config::IdentityHeader {
                name: HeaderName::from_static("x-forwarded-user"),
                claim: IdentityClaim::User,
            }],
        };
        let h = IdentityHeaders::new(&cfg);
        for n in [
            "X-Forwarded-User",
            "x_forwarded_user",
            "X_FORWARDED-USER",
            "x-forwarded-access-token",
        ] {
            assert!(h.is_protected(n), "{n}");
        }
        for n in ["x-forwarded-users", "authorization", "x-forwarded-use"] {
            assert!(!h.is_protected(n), "{n}");
        }
    }
}
