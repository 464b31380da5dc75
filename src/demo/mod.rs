//! `authgate demo` and its parts: the development IdP, the echo upstream and
//! the small loopback HTTP server that serves them (also to the tests).
//!
//! Compiled only with the `demo` Cargo feature (on by default): a build with
//! `--no-default-features`, like the container image, carries no
//! fixed-password identity provider. Everything here is for 127.0.0.1 only:
//! the IdP has fixed users with fixed passwords, so serving it anywhere else
//! would hand out identities to the network. [`refuse_non_loopback`] is the
//! guard the `demo` command runs before it binds anything, and
//! [`http_server`] refuses non-loopback listeners itself.

pub mod echo;
pub mod http_server;
pub mod idp;
mod run;

pub use run::run;

use std::net::SocketAddr;

/// Printed by `authgate demo` at start-up and shown on the IdP's pages.
pub const BANNER: &str = "\
**********************************************************************
*  authgate demo: DEVELOPMENT ONLY - NOT FOR PRODUCTION.             *
*  The embedded identity provider has fixed users and passwords      *
*  (alice/alice, bob/bob), in-memory state and a throwaway key.      *
*  Everything listens on 127.0.0.1 only.                             *
**********************************************************************";

/// Why the demo refuses to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DemoError {
    /// The demo's users have public passwords; only loopback keeps them local.
    #[error("authgate demo only binds loopback addresses (127.0.0.1, ::1), not {0}")]
    NotLoopback(SocketAddr),
    /// A listener handed to [`http_server`] has no local address.
    #[error("the listener's address is unknown: {0}")]
    Listener(String),
}

/// Errors with [`DemoError::NotLoopback`] unless `addr` is a loopback address
/// (127.0.0.0/8 or ::1).
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
    fn banner_says_not_for_production() {
        assert!(BANNER.contains("NOT FOR PRODUCTION"));
    }
}
