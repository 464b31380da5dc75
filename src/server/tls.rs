//! The TLS certificate of `listen`, swappable: the listener asks
//! [`CertStore`] for the certificate on each handshake, and a `SIGHUP`
//! reload re-reads `server.tls.cert_file` / `key_file` into it (cert-manager
//! and Kubernetes rotate mounted files in place). A pair that cannot be read,
//! parsed, or whose key does not match the certificate leaves the running
//! one in place.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::Tls;

/// Why a certificate/key pair was not taken.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE`, or a bad one.
    #[error("{0}: no valid PEM certificate")]
    Cert(String),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1), or a bad one.
    #[error("{0}: no valid PEM private key")]
    Key(String),
    /// The key type is not supported, or it does not match the certificate.
    #[error("{path}: {message}")]
    Pair {
        /// The key file.
        path: String,
        /// What rustls said.
        message: String,
    },
}

/// The current certificate chain and key of the TLS listener.
#[derive(Clone)]
pub struct CertStore {
    current: Arc<ArcSwap<CertifiedKey>>,
}

impl CertStore {
    /// Loads the pair named by `tls`.
    ///
    /// # Errors
    /// As [`load`].
    pub fn open(tls: &Tls) -> Result<Self, CertError> {
        Ok(CertStore {
            current: Arc::new(ArcSwap::from_pointee(load(tls)?)),
        })
    }

    /// Re-reads the pair named by `tls`; on error the running one stays.
    ///
    /// # Errors
    /// As [`load`].
    pub fn reload(&self, tls: &Tls) -> Result<(), CertError> {
        self.set(load(tls)?);
        Ok(())
    }

    /// Makes `key` (from [`load`]) the pair of every handshake from now on.
    pub fn set(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The resolver the listener's rustls configuration asks on each handshake.
    pub fn resolver(&self) -> Arc<dyn ResolvesServerCert> {
        Arc::new(Resolver(self.clone()))
    }
}

/// Reads and checks a PEM certificate chain and private key.
///
/// # Errors
/// A file that cannot be read, holds no certificate or key, a key type
/// rustls cannot sign with, or a key that does not belong to the
/// certificate.
pub fn load(tls: &Tls) -> Result<CertifiedKey, CertError> {
    let cert_pem = read(&tls.cert_file)?;
    let key_pem = read(&tls.key_file)?;
    let cert_name = tls.cert_file.display().to_string();
    let key_name = tls.key_file.display().to_string();
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertError::Cert(cert_name.clone()))?;
    if chain.is_empty() {
        return Err(CertError::Cert(cert_name));
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| CertError::Key(key_name.clone()))?;
    let pair = |e: rustls::Error| CertError::Pair {
        path: key_name.clone(),
        message: e.to_string(),
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(pair)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(pair)?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Hands out the store's current pair, whatever the SNI.
struct Resolver(CertStore);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.load_full())
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertStore resolver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        let tls = Tls {
            cert_file: cert.clone(),
            key_file: key.clone(),
        };
        assert!(matches!(load(&tls), Err(CertError::Read { .. })));
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let err = load(&tls).unwrap_err();
        assert!(err.to_string().contains("c.pem"), "{err}");
    }
}
