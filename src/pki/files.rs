//! A certificate pair from files (`--tls-cert`/`--tls-key`, e.g. renewed by cert-manager): read
//! at startup, then polled. A version that is unreadable or inconsistent is logged, counted and
//! rejected; the current pair keeps serving until the files change again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;

use super::metrics::TlsMetrics;
use super::resolver::{CertResolver, PairSource, TlsError, certified_key};
use crate::file_poll::{self, Read};
use crate::metrics::ReloadResult;
use crate::shutdown::Shutdown;

/// The pair of files, with the content in use.
#[derive(Debug)]
pub struct FilePair {
    src: PairSource,
    in_use: (Vec<u8>, Vec<u8>),
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    crate::file_poll::read_capped(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_owned(),
        error,
    })
}

impl FilePair {
    /// Read and check the pair (at startup, where any problem is fatal).
    pub fn load(
        cert: PathBuf,
        key: PathBuf,
        provider: &CryptoProvider,
    ) -> Result<(Self, CertifiedKey), TlsError> {
        let src = PairSource { cert, key };
        let cert_pem = read("--tls-cert", &src.cert)?;
        let key_pem = read("--tls-key", &src.key)?;
        let ck = certified_key(&cert_pem, &key_pem, &src, provider)?;
        let pair = Self {
            src,
            in_use: (cert_pem, key_pem),
        };
        Ok((pair, ck))
    }

    /// The files.
    pub fn source(&self) -> &PairSource {
        &self.src
    }

    /// Poll the files every `interval` until `shutdown` stops; serve a new pair through
    /// `resolver` once both files are consistent.
    pub async fn watch(
        self,
        resolver: Arc<CertResolver>,
        provider: Arc<CryptoProvider>,
        interval: Duration,
        metrics: TlsMetrics,
        shutdown: Shutdown,
    ) {
        let Self { src, in_use } = self;
        let paths = vec![src.cert.clone(), src.key.clone()];
        file_poll::poll(
            paths,
            interval,
            vec![in_use.0, in_use.1],
            shutdown,
            move |read| metrics.tls_reload(reload(read, &src, &resolver, &provider)),
        )
        .await;
    }
}

fn reload(
    read: Read,
    src: &PairSource,
    resolver: &CertResolver,
    provider: &CryptoProvider,
) -> ReloadResult {
    match read {
        Err((i, e)) => {
            let (flag, file) = if i == 0 {
                ("--tls-cert", &src.cert)
            } else {
                ("--tls-key", &src.key)
            };
            tracing::warn!(flag, file = %file.display(), error = %e, "cannot read the new certificate files; keeping the current certificate");
            ReloadResult::ReadError
        }
        Ok(c) => match certified_key(&c[0], &c[1], src, provider) {
            Ok(ck) => {
                resolver.store(ck);
                tracing::info!(cert = %src.cert.display(), key = %src.key.display(), "TLS certificate reloaded; new connections use it");
                ReloadResult::Success
            }
            Err(e) => {
                // Typically a pair caught between the writes of its two files: the next
                // change, once both are written, is tried again.
                tracing::warn!(error = %e, "the new certificate pair is not usable (yet); keeping the current certificate");
                ReloadResult::Invalid
            }
        },
    }
}
