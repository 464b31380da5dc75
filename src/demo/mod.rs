//! The embedded development IdP and echo upstream of `authgate demo`.
//!
//! Both are Pingora `ServeHttp` apps meant for 127.0.0.1 only: the IdP has
//! fixed users with fixed passwords, so binding it anywhere else would hand out
//! identities to the network. [`refuse_non_loopback`] is the guard the `demo`
//! command runs before it binds anything.

pub mod echo;
pub mod idp;

use std::net::SocketAddr;

/// Printed by `authgate demo` at start-up and shown on the IdP's pages.
pub const BANNER: &str = "\
**********************************************************************
*  authgate demo: DEVELOPMENT ONLY - NOT FOR PRODUCTION.             *
*  The embedded identity provider has fixed users and passwords      *
*  (alice/alice, bob/bob), in-memory state and a throwaway key.      *
*  Everything listens on 127.0.0.1 only.                             *
**********************************************************************";

/// Pingora's `ServeHttp` adapter does not frame the body; an explicit length
/// keeps HTTP/1.1 connections reusable for the proxy's IdP client.
fn with_content_length(mut resp: http::Response<Vec<u8>>) -> http::Response<Vec<u8>> {
    let len = http::HeaderValue::from(resp.body().len());
    resp.headers_mut().insert(http::header::CONTENT_LENGTH, len);
    resp
}

/// Why the demo refuses to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DemoError {
    /// The demo's users have public passwords; only loopback keeps them local.
    #[error("authgate demo only binds loopback addresses (127.0.0.1, ::1), not {0}")]
    NotLoopback(SocketAddr),
}

/// Errors unless `addr` is a loopback address (127.0.0.0/8 or ::1).
pub fn refuse_non_loopback(addr: &SocketAddr) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(DemoError::NotLoopback(*addr).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses_are_accepted() {
        for a in ["127.0.0.1:4180", "127.0.0.2:1", "[::1]:4180"] {
            let addr: SocketAddr = a.parse().unwrap();
            assert!(refuse_non_loopback(&addr).is_ok(), "{a}");
        }
    }

    #[test]
    fn non_loopback_addresses_are_refused() {
        for a in [
            "0.0.0.0:4180",
            "10.0.0.1:4180",
            "[::]:4180",
            "192.168.1.2:80",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let err = refuse_non_loopback(&addr).unwrap_err();
            assert_eq!(
                err.downcast_ref::<DemoError>(),
                Some(&DemoError::NotLoopback(addr)),
                "{a}"
            );
        }
    }

    #[test]
    fn responses_get_an_explicit_content_length() {
        let resp = with_content_length(http::Response::new(b"hello".to_vec()));
        assert_eq!(resp.headers()[http::header::CONTENT_LENGTH], "5");
    }

    #[test]
    fn banner_says_not_for_production() {
        assert!(BANNER.contains("NOT FOR PRODUCTION"));
    }
}

mod run;
pub use run::run;
