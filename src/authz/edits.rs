//! What an allow does to the upstream request and the client's response,
//! described once, neutrally: the proxy applies an [`UpstreamEdits`], the
//! ext_authz HTTP and gRPC front ends only render it for Envoy (the shape
//! of Envoy's own `ext_authz::Response`, which both its clients produce).

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::headers::IdentitySet;
use super::Grant;
use crate::gate::Gate;
use crate::session::cookies::{strip_own_cookie_lines, CookieEdit};

/// The upstream-facing side of an allow (or a skip, which sets no identity).
#[derive(Debug)]
pub struct UpstreamEdits {
    /// Identity headers to set, replacing any value the client sent.
    pub set: IdentitySet,
    /// Every protected name the request carries, in any case or `_`
    /// spelling (`X_Forwarded_User`): the client's claims of identity.
    pub spoofed: Vec<HeaderName>,
    /// The `Cookie` header without authgate's own cookies (sealed sessions
    /// and login-flow cookies never reach the app).
    pub cookie: CookieRewrite,
    /// `Set-Cookie` values for the client (a refreshed session), each its
    /// own line.
    pub client_cookies: Vec<HeaderValue>,
    /// Every name an allow may set (for removals of the unset ones).
    identity_names: Arc<[HeaderName]>,
}

impl Gate {
    /// The edits for a request the decision let through: `grant` for an
    /// allow, `None` for a skip. `seen` is the request's headers. Called by
    /// every front end after `decide`; never blocks, never logs.
    pub fn upstream_edits(&self, grant: Option<Grant>, seen: &HeaderMap) -> UpstreamEdits {
        let (set, client_cookies) = match grant {
            Some(g) => (self.headers.values(&g), g.set_cookies),
            None => (IdentitySet::empty(), Vec::new()),
        };
        let is_protected = |n: &&HeaderName| self.headers.is_protected(n.as_str());
        // Most requests carry none: look before allocating the list.
        let spoofed = if seen.keys().any(|n| is_protected(&n)) {
            seen.keys().filter(is_protected).cloned().collect()
        } else {
            Vec::new()
        };
        let cookie = CookieRewrite::new(seen, &self.cfg.cookie.name);
        UpstreamEdits {
            set,
            spoofed,
            cookie,
            client_cookies,
            identity_names: self.headers.all_names(),
        }
    }
}

impl UpstreamEdits {
    /// For a caller that applies removals *after* sets (Envoy): every
    /// identity name not set this time, every spoofed spelling not set, and
    /// `cookie` when the rewrite leaves no cookie. A name that is set is
    /// never listed, or Envoy would remove what it just set.
    pub fn removals_after_set(&self) -> Vec<&str> {
        let is_set = |n: &str| self.set.iter().any(|s| s.name.as_str() == n);
        let mut out: Vec<&str> = Vec::new();
        for name in self.identity_names.iter().chain(self.spoofed.iter()) {
            let name = name.as_str();
            if !is_set(name) && !out.contains(&name) {
                out.push(name);
            }
        }
        // The rewrite leaves no cookie: `joined()` would be `None`; told
        // without building it (`sets_with_cookie` builds it once).
        if matches!(&self.cookie, CookieRewrite::Lines(l) if l.iter().all(|v| v.is_empty())) {
            out.push(http::header::COOKIE.as_str());
        }
        out
    }

    /// For a caller that only sets headers (Envoy): the identity headers,
    /// then the rewritten `Cookie`, its lines joined into one (Envoy sets a
    /// single value), when it changed and is not empty.
    pub fn sets_with_cookie(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut out: Vec<(HeaderName, HeaderValue)> = self.set.pairs().collect();
        if let Some(joined) = self.cookie.joined() {
            out.push((http::header::COOKIE, joined));
        }
        out
    }
}

/// What becomes of the request's `Cookie` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieRewrite {
    /// None carries one of authgate's cookies: forward them untouched.
    Keep,
    /// Send these lines instead, each line's other cookies kept in place
    /// (empty: send no `Cookie` header at all).
    Lines(Vec<HeaderValue>),
}

impl CookieRewrite {
    /// Each `Cookie` line of `seen` without the cookies named after `name`
    /// (the session, its chunks, the login-flow cookies).
    fn new(seen: &HeaderMap, name: &str) -> Self {
        // One pass; nothing is allocated while every line is kept (most
        // requests): the list starts at the first line that changes.
        let mut kept: Option<Vec<HeaderValue>> = None;
        for (i, line) in seen.get_all(http::header::COOKIE).iter().enumerate() {
            let edit = strip_own_cookie_lines(std::iter::once(line), name);
            if kept.is_none() {
                if matches!(edit, CookieEdit::Keep) {
                    continue;
                }
                let before = seen.get_all(http::header::COOKIE).iter().take(i).cloned();
                kept = Some(before.collect());
            }
            if let Some(kept) = kept.as_mut() {
                match edit {
                    CookieEdit::Keep => kept.push(line.clone()),
                    CookieEdit::Replace(v) => kept.push(v),
                    CookieEdit::Remove => {}
                }
            }
        }
        let Some(kept) = kept else {
            return CookieRewrite::Keep;
        };
        CookieRewrite::Lines(kept)
    }

    /// The rewritten lines as one value (`; `-joined, RFC 6265 §5.4), or
    /// `None` when unchanged or empty.
    fn joined(&self) -> Option<HeaderValue> {
        let CookieRewrite::Lines(lines) = self else {
            return None;
        };
        if let [only] = lines.as_slice() {
            // One line (the usual case): itself, no copy.
            return Some(only.clone()).filter(|v| !v.is_empty());
        }
        let mut bytes: Vec<u8> = Vec::new();
        for line in lines {
            if !bytes.is_empty() {
                bytes.extend_from_slice(b"; ");
            }
            bytes.extend_from_slice(line.as_bytes());
        }
        // Cut from valid header values, so this holds; if not, dropping the
        // header keeps authgate's cookies from the app.
        HeaderValue::from_bytes(&bytes)
            .ok()
            .filter(|_| !bytes.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(http::header::COOKIE, HeaderValue::from_bytes(l).unwrap());
        }
        h
    }

    #[test]
    fn own_cookies_go_line_by_line_and_envoy_gets_them_joined() {
        let h = seen(&[
            b"app=1; pref=\xe9; _oauth2_proxy=x",
            b"_oauth2_proxy_csrf_a=y; lang=en",
            b"_oauth2_proxy_1=z",
        ]);
        let rw = CookieRewrite::new(&h, "_oauth2_proxy");
        let want: Vec<HeaderValue> = vec![
            HeaderValue::from_bytes(b"app=1; pref=\xe9").unwrap(),
            HeaderValue::from_static("lang=en"),
        ];
        assert_eq!(rw, CookieRewrite::Lines(want));
        assert_eq!(
            rw.joined().unwrap().as_bytes(),
            b"app=1; pref=\xe9; lang=en"
        );
    }

    #[test]
    fn untouched_lines_are_kept_and_only_own_cookies_means_no_header() {
        let h = seen(&[b"a=1", b"b=2"]);
        assert_eq!(CookieRewrite::new(&h, "_oauth2_proxy"), CookieRewrite::Keep);
        assert_eq!(
            CookieRewrite::new(&HeaderMap::new(), "_oauth2_proxy"),
            CookieRewrite::Keep
        );
        let h = seen(&[b"_oauth2_proxy=x", b"_oauth2_proxy_csrf_q=1"]);
        let rw = CookieRewrite::new(&h, "_oauth2_proxy");
        assert_eq!(rw, CookieRewrite::Lines(Vec::new()));
        assert_eq!(rw.joined(), None);
    }
}
