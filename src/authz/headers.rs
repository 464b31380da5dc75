//! Identity headers: which client headers are stripped (every name that
//! could be mistaken for one of ours, whatever its case or `_`/`-` spelling)
//! and which are set from a [`Grant`].

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::Grant;
use crate::config::{Headers, IdentityClaim};

/// The header `pass_access_token` sends the access token in.
pub const ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-forwarded-access-token");

/// One identity header an allow sets upstream.
#[derive(Debug, Clone)]
pub struct IdentityValue {
    /// The header's name.
    pub name: HeaderName,
    /// The same name as shared bytes, built once with the policy: Pingora's
    /// case-keeping header map takes a name as bytes, and a `HeaderName`
    /// would be copied into fresh bytes on every request.
    pub wire: Bytes,
    /// The value.
    pub value: HeaderValue,
}

/// The identity header policy built once from `headers` in the config.
pub struct IdentityHeaders {
    cfg: Headers,
    /// `cfg.identity`'s names as bytes, in the same order (see
    /// [`IdentityValue::wire`]).
    wire: Vec<Bytes>,
    /// Lower-case, `-`-separated spellings of every protected name.
    protected: Vec<String>,
    /// Every name [`IdentityHeaders::values`] may set, in order.
    all: Arc<[HeaderName]>,
    /// `assertion.header`, when the signed assertion is on, and its bytes.
    assertion: Option<(HeaderName, Bytes)>,
}

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
            wire: cfg
                .identity
                .iter()
                .map(|h| Bytes::copy_from_slice(h.name.as_str().as_bytes()))
                .collect(),
            protected,
            all: all.into(),
            assertion: None,
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
            let wire = Bytes::copy_from_slice(name.as_str().as_bytes());
            self.assertion = Some((name.clone(), wire));
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
    pub fn values(&self, grant: &Grant) -> Vec<IdentityValue> {
        let mut out = Vec::with_capacity(self.cfg.identity.len() + 3);
        let id = &grant.identity;
        // Each field's value is built once and shared (a `HeaderValue` clone
        // is a reference count): the default set sends every field twice,
        // as `X-Auth-Request-*` and as `X-Forwarded-*`.
        let mut built: [Option<Option<HeaderValue>>; 4] = [None, None, None, None];
        for (h, wire) in self.cfg.identity.iter().zip(&self.wire) {
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
                    wire: wire.clone(),
                    value,
                });
            }
        }
        if self.cfg.pass_authorization {
            if let Some(v) = grant
                .id_token
                .as_ref()
                .map(|t| &**t.expose())
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            {
                out.push(IdentityValue {
                    name: http::header::AUTHORIZATION,
                    wire: Bytes::from_static(b"authorization"),
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
                    wire: Bytes::from_static(b"x-forwarded-access-token"),
                    value: v,
                });
            }
        }
        if let (Some((name, wire)), Some(v)) = (&self.assertion, &grant.assertion) {
            out.push(IdentityValue {
                name: name.clone(),
                wire: wire.clone(),
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
