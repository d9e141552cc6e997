//! A small CA issuing serving (and client) certificates with rcgen, used by the `certs` command,
//! the ephemeral certificate of `serve`, and any source that makes its own certificates.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Certificates are valid from this long before they are made, to tolerate clock skew.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// Errors of certificate generation and of the `certs` command.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate the certificate: {0}")]
    Generate(rcgen::Error),
    /// An output file could not be written.
    #[error("--out: cannot write {}: {error}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// An output file exists and `--force` was not given.
    #[error("--out: {path} already exists (pass --force to overwrite)")]
    Exists {
        /// The file.
        path: PathBuf,
    },
}

impl From<rcgen::Error> for CertError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e)
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// A self-signed certificate authority that issues leaf certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pair: Pair,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_pem", &self.pair.cert_pem)
            .finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, valid_for: time::Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + valid_for;
}

fn days(n: u32) -> time::Duration {
    time::Duration::days(i64::from(n))
}

/// `d` as a `time` duration, saturating (validities of centuries are clamped, not wrapped).
fn span(d: std::time::Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "carto-wi-webhook");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl CertificateAuthority {
    /// A new CA (ECDSA P-256) named `common_name`, valid for `days`.
    pub fn new(common_name: &str, days_valid: u32) -> Result<Self, CertError> {
        Self::generate(common_name, days(days_valid))
    }

    /// A new CA (ECDSA P-256) named `common_name`, valid for `valid_for` from now.
    pub fn with_validity(
        common_name: &str,
        valid_for: std::time::Duration,
    ) -> Result<Self, CertError> {
        Self::generate(common_name, span(valid_for))
    }

    /// The CA made earlier by [`CertificateAuthority::with_validity`] with this `common_name`,
    /// from its certificate and key. The caller checks that the key is the certificate's.
    pub fn from_pem(common_name: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(Self {
            issuer: Issuer::new(ca_params(common_name)?, key),
            pair: Pair {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
        })
    }

    fn generate(common_name: &str, valid_for: time::Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(common_name)?;
        validity(&mut params, valid_for);
        let cert = params.self_signed(&key)?;
        let pair = Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            issuer: Issuer::new(params, key),
            pair,
        })
    }

    /// The CA certificate (PEM), what clients trust (the webhook's `caBundle`).
    pub fn cert_pem(&self) -> &str {
        &self.pair.cert_pem
    }

    /// The CA's private key (PEM).
    pub fn key_pem(&self) -> &str {
        &self.pair.key_pem
    }

    /// Issue a serving certificate for these DNS names and IP addresses (the first is also the
    /// common name).
    pub fn issue_server(&self, sans: &[String], days_valid: u32) -> Result<Pair, CertError> {
        self.issue(sans, ExtendedKeyUsagePurpose::ServerAuth, days(days_valid))
    }

    /// [`CertificateAuthority::issue_server`], valid for `valid_for` from now.
    pub fn issue_server_valid_for(
        &self,
        sans: &[String],
        valid_for: std::time::Duration,
    ) -> Result<Pair, CertError> {
        self.issue(sans, ExtendedKeyUsagePurpose::ServerAuth, span(valid_for))
    }

    /// Issue a client certificate (for mutual TLS) with this common name.
    pub fn issue_client(&self, common_name: &str, days_valid: u32) -> Result<Pair, CertError> {
        self.issue(
            &[common_name.to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
            days(days_valid),
        )
    }

    fn issue(
        &self,
        sans: &[String],
        usage: ExtendedKeyUsagePurpose,
        valid_for: time::Duration,
    ) -> Result<Pair, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = name(sans.first().map_or("carto-wi-webhook", String::as_str));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, valid_for);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// The parameters of a CA named `common_name` (no validity): also what re-creates its issuer,
/// whose name must be byte-identical to the certificate's subject.
fn ca_params(common_name: &str) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name = name(common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The names a webhook Service is reached by: `NAME`, `NAME.NS`, `NAME.NS.svc`,
/// `NAME.NS.svc.cluster.local`, plus `localhost`, `127.0.0.1` and `::1` when asked.
pub fn service_names(service: &str, namespace: &str, localhost: bool) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ];
    if localhost {
        names.extend(localhost_names());
    }
    names
}

/// `localhost`, `127.0.0.1` and `::1`.
pub fn localhost_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// Write `contents` to `path`, mode 0600 for secrets and 0644 otherwise.
pub fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let err = |error| CertError::Write {
        path: path.to_owned(),
        error,
    };
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    // The mode above only applies to new files; tighten an existing one too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(err)?;
    f.write_all(contents).map_err(err)?;
    f.sync_all().map_err(err)
}
