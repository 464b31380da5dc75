//! Envoy ext_authz front ends: HTTP (`envoyExtAuthzHttp`) and gRPC
//! (`envoyExtAuthzGrpc`), each a thin adapter over `Gate::decide`.

pub mod grpc;
pub mod http;

use ::http::{HeaderMap, HeaderName, HeaderValue};

use crate::authz::Grant;
use crate::gate::Gate;
use crate::session::cookies::strip_own_cookies_bytes;

/// What an allow asks Envoy to do to the upstream request: headers to set
/// (overwriting) and names to remove (applied after the sets).
pub(crate) struct UpstreamEdits {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<String>,
}

/// The identity headers of the grant, removal of every protected name not
/// set (including other spellings seen in the request), and the `cookie`
/// header without authgate's own cookies.
pub(crate) fn upstream_edits(
    gate: &Gate,
    grant: Option<&Grant>,
    seen: &HeaderMap,
) -> UpstreamEdits {
    let mut set = grant.map(|g| gate.headers.values(g)).unwrap_or_default();
    let mut remove = http::removals(gate, &set, seen);
    match stripped_cookie(gate, seen) {
        CookieEdit::Keep => {}
        CookieEdit::Replace(v) => set.push((::http::header::COOKIE, v)),
        CookieEdit::Remove => remove.push(::http::header::COOKIE.as_str().to_owned()),
    }
    UpstreamEdits { set, remove }
}

enum CookieEdit {
    Keep,
    Replace(HeaderValue),
    Remove,
}

/// The contract keeps authgate's cookies (sealed sessions) from the app on
/// every listener; behind Envoy the only way is to rewrite `cookie`.
fn stripped_cookie(gate: &Gate, seen: &HeaderMap) -> CookieEdit {
    let name = &gate.cfg.cookie.name;
    let mut changed = false;
    let mut kept: Vec<u8> = Vec::new();
    for line in seen.get_all(::http::header::COOKIE) {
        match strip_own_cookies_bytes(line.as_bytes(), name) {
            Some(part) => {
                changed |= matches!(part, std::borrow::Cow::Owned(_));
                if !kept.is_empty() {
                    kept.extend_from_slice(b"; ");
                }
                kept.extend_from_slice(&part);
            }
            None => changed = true,
        }
    }
    if !changed {
        return CookieEdit::Keep;
    }
    if kept.is_empty() {
        return CookieEdit::Remove;
    }
    HeaderValue::from_bytes(&kept).map_or(CookieEdit::Remove, CookieEdit::Replace)
}
