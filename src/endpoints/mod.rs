//! The `/oauth2/*` endpoints, shared by every front end: `start`,
//! `callback` and `sign_out` on every listener (through `Gate::decide`);
//! `auth`, `userinfo`, `backchannel_logout` and `jwks.json` on `listen` only.

mod flow;
mod info;
mod jwks;
pub mod pages;
pub(crate) mod pending;
mod sign_out;

pub use flow::flow_cookie_name;

use std::borrow::Cow;

use crate::authz::RequestView;

/// A query parameter of the request URI, percent-decoded.
pub(crate) fn query_param<'a>(req: &RequestView<'a>, name: &str) -> Option<Cow<'a, str>> {
    let query = req.uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `scheme://host` + a same-host path, for IdP parameters that must be absolute.
pub(crate) fn absolute(req: &RequestView<'_>, target: &str) -> String {
    if target.starts_with('/') {
        format!("{}://{}{}", req.scheme, req.host, target)
    } else {
        target.to_owned()
    }
}
