//! The ephemeral certificate of `serve` without `--tls-cert`: a fresh CA and a serving certificate
//! for localhost, the CA written to a file for clients to trust.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use super::ca::{CertError, CertificateAuthority, localhost_names, write_file};
use super::resolver::{PairSource, TlsError, certified_key};

/// Validity of the ephemeral CA and certificate, in days.
pub const EPHEMERAL_DAYS: u32 = 30;

/// Why the ephemeral certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// rcgen failed.
    #[error("cannot generate the ephemeral certificate: {0}")]
    Generate(CertError),
    /// The generated pair does not load (a bug rather than an input problem).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The CA file cannot be written.
    #[error("--ephemeral-ca-out {}: cannot write: {error}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Make the ephemeral CA and serving certificate; write the CA (PEM) to `ca_out`.
pub fn ephemeral(ca_out: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, EphemeralError> {
    let ca = CertificateAuthority::new("carto-wi-webhook ephemeral CA", EPHEMERAL_DAYS)
        .map_err(EphemeralError::Generate)?;
    let leaf = ca
        .issue_server(&localhost_names(), EPHEMERAL_DAYS)
        .map_err(EphemeralError::Generate)?;
    let src = PairSource {
        cert: "(ephemeral certificate)".into(),
        key: "(ephemeral key)".into(),
    };
    let ck = certified_key(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        &src,
        provider,
    )?;
    write_file(ca_out, ca.cert_pem().as_bytes(), false).map_err(|e| match e {
        CertError::Write { path, error } => EphemeralError::Write { path, error },
        other => EphemeralError::Generate(other),
    })?;
    tracing::info!(ca = %ca_out.display(), names = "localhost, 127.0.0.1, ::1", "no --tls-cert/--tls-key: serving an ephemeral certificate; its CA is written to the file named here");
    Ok(ck)
}
