//! The sink every certificate source writes into: a resolver whose pair is swapped on rotation,
//! and the check that turns PEM text into a servable pair.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A problem with a certificate, a key or a CA bundle. The message names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{flag} {}: cannot read: {error}", .path.display())]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A file holds no usable PEM object of the expected type.
    #[error("{flag} {}: {message}", .path.display())]
    Pem {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key is not the certificate's key.
    #[error("--tls-key {} does not match the certificate in --tls-cert {}", .key.display(), .cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("{flag}: {error}")]
    Rustls {
        /// The flag at fault.
        flag: &'static str,
        /// Why.
        error: rustls::Error,
    },
}

/// Where a certificate pair comes from, for messages (files, or generated in memory).
#[derive(Debug, Clone)]
pub struct PairSource {
    /// The certificate file (or a description).
    pub cert: PathBuf,
    /// The key file (or a description).
    pub key: PathBuf,
}

/// The crypto provider of the server and its certificates (ring), independent of the process
/// default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build a [`CertifiedKey`] from PEM text, checking that the key belongs to the leaf
/// certificate.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    src: &PairSource,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let pem_err = |flag, path: &Path, message: String| TlsError::Pem {
        flag,
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            pem_err(
                "--tls-cert",
                &src.cert,
                format!("not PEM certificates: {e}"),
            )
        })?;
    if chain.is_empty() {
        return Err(pem_err(
            "--tls-cert",
            &src.cert,
            "no CERTIFICATE block found".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        pem_err(
            "--tls-key",
            &src.key,
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        pem_err(
            "--tls-key",
            &src.key,
            format!("unsupported private key: {e}"),
        )
    })?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) => Ok(ck),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::Mismatch {
                cert: src.cert.clone(),
                key: src.key.clone(),
            })
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(ck),
        Err(e) => Err(pem_err(
            "--tls-cert",
            &src.cert,
            format!("unusable certificate: {e}"),
        )),
    }
}

/// Serves whichever certificate pair was stored last. New handshakes pick up a rotated pair;
/// established connections keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `initial`.
    pub fn new(initial: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// Serve `next` from the next handshake on.
    pub fn store(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
