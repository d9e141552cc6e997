//! TLS for the admission listener: the client-CA verifier for mutual TLS and the rustls server
//! configuration (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`) over a [`CertResolver`]. Where the
//! certificate comes from is `pki`'s business.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use tokio_rustls::TlsAcceptor;

use crate::duration::parse_duration;
use crate::pki::{CertResolver, TlsError};

/// Certificates of the HTTPS listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Serving certificate chain (PEM, leaf first). Re-read when it changes, e.g. when cert-manager
    /// renews it. Without --tls-cert/--tls-key an ephemeral CA and certificate are generated for
    /// localhost.
    #[arg(
        long,
        env = "CARTO_WI_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// Private key of the serving certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "CARTO_WI_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by these CAs (PEM): mutual TLS. Clients without a valid
    /// certificate fail the handshake.
    #[arg(long, env = "CARTO_WI_CLIENT_CA", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Where to write the ephemeral CA certificate (PEM) when no --tls-cert is given
    /// [default: carto-wi-webhook-ca.crt in the temporary directory].
    #[arg(
        long,
        env = "CARTO_WI_EPHEMERAL_CA_OUT",
        value_name = "FILE",
        conflicts_with = "tls_cert"
    )]
    pub ephemeral_ca_out: Option<PathBuf>,

    /// Time allowed for a client to complete the TLS handshake.
    #[arg(long, env = "CARTO_WI_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,
}

/// Read the client CA bundle for mutual TLS.
pub fn load_client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = crate::file_poll::read_capped(path).map_err(|error| TlsError::Read {
        flag: "--client-ca",
        path: path.to_owned(),
        error,
    })?;
    let err = |message: String| TlsError::Pem {
        flag: "--client-ca",
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| err(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// The rustls configuration of the admission listener.
pub fn server_config(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    client_roots: Option<RootCertStore>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Rustls {
            flag: "--tls-cert",
            error,
        })?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Pem {
                    flag: "--client-ca",
                    path: PathBuf::new(),
                    message: format!("cannot build the client verifier: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The TLS acceptor of the admission listener: `resolver`'s certificate, and mutual TLS when
/// `client_ca` is given.
pub fn acceptor(
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    client_ca: Option<&Path>,
) -> Result<TlsAcceptor, TlsError> {
    let client_roots = match client_ca {
        Some(p) => {
            let roots = load_client_roots(p)?;
            tracing::info!(client_ca = %p.display(), "mutual TLS: clients must present a certificate signed by --client-ca");
            Some(roots)
        }
        None => None,
    };
    let config = server_config(provider, resolver, client_roots)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
