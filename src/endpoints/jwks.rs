//! `GET /oauth2/jwks.json` on `listen`: the public keys (RFC 7517 JWKS)
//! that verify the signed identity assertion, current first, then the
//! previous ones still published for rotation. No authentication: public
//! keys are public, and upstreams (Grafana's `jwk_set_url`) fetch them
//! without a session.

use http::{header, HeaderValue, StatusCode};

use super::pages;
use crate::authz::{Outcome, Reply};
use crate::gate::Gate;

/// How long clients may cache the key set: rotation keeps the previous key
/// published for longer than this.
const MAX_AGE: &str = "public, max-age=300";

impl Gate {
    /// 200 with the JWKS and `Cache-Control: max-age=300`; 404 when the
    /// assertion is off. Never blocks.
    pub(crate) fn jwks(&self) -> Reply {
        let Some(signer) = &self.assertion else {
            return pages::text(StatusCode::NOT_FOUND, Outcome::Skipped, "Not found\n");
        };
        let mut r = pages::json(StatusCode::OK, Outcome::Skipped, Vec::new());
        r.body = signer.jwks();
        r.headers.retain(|(n, _)| n != header::CACHE_CONTROL);
        r.headers
            .push((header::CACHE_CONTROL, HeaderValue::from_static(MAX_AGE)));
        r.headers.retain(|(n, _)| n != header::CONTENT_TYPE);
        r.headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        ));
        r
    }
}
