//! `headers`: identity header names (valid, not reserved) and their claims.

use super::Validator;
use crate::config::file::HeadersFile;
use crate::config::model::{Headers, IdentityClaim, IdentityHeader};

impl Validator {
    pub(super) fn headers(&mut self, h: HeadersFile) -> Option<Headers> {
        /// Names whose removal from client requests (which every identity
        /// header gets) would break the request or authgate itself.
        const RESERVED: [&str; 13] = [
            "host",
            "cookie",
            "set-cookie",
            "authorization",
            "x-forwarded-access-token",
            "content-length",
            "content-type",
            "transfer-encoding",
            "connection",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
        ];
        let mut identity = Vec::with_capacity(h.identity.len());
        let mut ok = true;
        for (i, header) in h.identity.iter().enumerate() {
            let key = format!("headers.identity[{i}]");
            let name = match http::HeaderName::from_bytes(header.name.trim().as_bytes()) {
                Ok(name) if RESERVED.contains(&name.as_str()) => {
                    self.problem(
                        format!("{key}.name"),
                        format!("{name} cannot carry identity"),
                    );
                    None
                }
                Ok(name) => Some(name),
                Err(_) => {
                    self.problem(format!("{key}.name"), "must be a valid HTTP header name");
                    None
                }
            };
            let claim = match header.claim.trim() {
                "user" => Some(IdentityClaim::User),
                "email" => Some(IdentityClaim::Email),
                "preferred_username" => Some(IdentityClaim::PreferredUsername),
                "groups" => Some(IdentityClaim::Groups),
                _ => {
                    self.problem(
                        format!("{key}.claim"),
                        "must be user, email, preferred_username or groups",
                    );
                    None
                }
            };
            match (name, claim) {
                (Some(name), Some(claim)) => identity.push(IdentityHeader { name, claim }),
                _ => ok = false,
            }
        }
        ok.then_some(Headers {
            pass_authorization: h.pass_authorization,
            pass_access_token: h.pass_access_token,
            identity,
        })
    }
}
