//! Flags of the IAM binding check (cluster mode).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::client::{DEFAULT_ENDPOINT, IamClient};
use super::credentials::{Credentials, CredentialsError};
use super::http::HttpClient;
use super::metrics::IamMetrics;
use super::verifier::{Verifier, VerifierConfig};
use crate::duration::parse_interval;

/// Deadline of one token or IAM exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the webhook checks the Google side of Workload Identity.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "IAM binding check (cluster mode)")]
pub struct IamArgs {
    /// Read each configured Google service account's IAM policy and report whether the
    /// namespace's Kubernetes ServiceAccount holds roles/iam.workloadIdentityUser on it.
    #[arg(long, env = "CARTO_WI_VERIFY_IAM", default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub verify_iam: bool,

    /// Base URL of the IAM API (a private endpoint, or a stand-in in tests).
    #[arg(long, env = "CARTO_WI_IAM_ENDPOINT", default_value = DEFAULT_ENDPOINT, value_name = "URL", value_parser = endpoint_url)]
    pub iam_endpoint: String,

    /// Extra CA certificates (PEM) trusted for --iam-endpoint and the token endpoint, besides
    /// the Mozilla roots.
    #[arg(long, env = "CARTO_WI_IAM_CA_FILE", value_name = "FILE")]
    pub iam_ca_file: Option<PathBuf>,

    /// How long a service account's IAM policy is trusted before it is read again.
    #[arg(long, env = "CARTO_WI_IAM_RECHECK", default_value = "10m", value_name = "DURATION", value_parser = parse_interval)]
    pub iam_recheck: Duration,

    /// Do not switch a namespace to a new Google service account until its binding is present.
    #[arg(long, env = "CARTO_WI_REQUIRE_IAM_BINDING", default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub require_iam_binding: bool,
}

/// An `https://` URL, or `http://` on a loopback address (bearer tokens never cross a network
/// in clear).
fn endpoint_url(s: &str) -> Result<String, String> {
    let uri: hyper::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("{s:?} has no host"))?;
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match uri.scheme_str() {
        Some("https") => Ok(s.to_owned()),
        Some("http") if loopback => Ok(s.to_owned()),
        _ => Err(format!(
            "{s:?}: use https:// (http:// only on a loopback address)"
        )),
    }
}

/// Why the IAM check cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IamSetupError {
    /// --iam-ca-file unreadable or not PEM.
    #[error("--iam-ca-file {}: {message}", .path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The TLS configuration was refused.
    #[error("IAM client TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// No usable credentials source.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl IamArgs {
    /// The verifier these flags describe, with credentials from the process environment.
    pub fn verifier(&self, metrics: IamMetrics) -> Result<Verifier, IamSetupError> {
        let http = HttpClient::new(&self.extra_roots()?, REQUEST_TIMEOUT)?;
        let credentials = Credentials::from_env(http.clone())?;
        tracing::info!(credentials = %credentials.describe(), endpoint = %self.iam_endpoint, "IAM binding check on");
        let config = VerifierConfig {
            recheck: self.iam_recheck,
            ..VerifierConfig::default()
        };
        Ok(Verifier::new(
            IamClient::new(&self.iam_endpoint, http, credentials),
            config,
            metrics,
        ))
    }

    fn extra_roots(&self) -> Result<Vec<CertificateDer<'static>>, IamSetupError> {
        let Some(path) = &self.iam_ca_file else {
            return Ok(Vec::new());
        };
        let err = |message: String| IamSetupError::CaFile {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let roots = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("not PEM certificates: {e}")))?;
        if roots.is_empty() {
            return Err(err("no certificate in the file".to_owned()));
        }
        Ok(roots)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        iam: IamArgs,
    }

    fn parse(args: &[&str]) -> Result<IamArgs, clap::Error> {
        let argv = std::iter::once("test").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.iam)
    }

    #[test]
    fn defaults_are_off_google_and_ten_minutes() {
        let a = parse(&[]).unwrap();
        assert!(!a.verify_iam && !a.require_iam_binding);
        assert_eq!(a.iam_endpoint, "https://iam.googleapis.com");
        assert_eq!(a.iam_recheck, Duration::from_secs(600));
    }

    #[test]
    fn endpoint_must_be_https_unless_loopback() {
        assert!(parse(&["--iam-endpoint", "https://iam.example.internal:8443"]).is_ok());
        assert!(parse(&["--iam-endpoint", "http://127.0.0.1:8080"]).is_ok());
        assert!(parse(&["--iam-endpoint", "http://[::1]:8080"]).is_ok());
        assert!(parse(&["--iam-endpoint", "http://iam.example.internal"]).is_err());
        assert!(parse(&["--iam-endpoint", "ftp://127.0.0.1"]).is_err());
        assert!(parse(&["--iam-endpoint", "iam.googleapis.com"]).is_err());
    }

    #[test]
    fn zero_recheck_is_refused() {
        assert!(parse(&["--iam-recheck", "0s"]).is_err());
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let a = parse(&["--iam-ca-file", path.to_str().unwrap()]).unwrap();
        let e = a.extra_roots().unwrap_err();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }

    #[test]
    fn ca_file_missing_names_the_flag() {
        let a = parse(&["--iam-ca-file", "/nonexistent/ca.pem"]).unwrap();
        let e = a.extra_roots().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--iam-ca-file /nonexistent/ca.pem"),
            "{e}"
        );
    }
}
