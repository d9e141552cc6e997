//! Certificates for the test control plane and webhook (rcgen; nothing is written outside the
//! run's own folder).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that can sign serving and client certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// PEM of the CA certificate.
    pub cert_pem: String,
}

/// A signed certificate and its key, written as PEM files.
pub struct Signed {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).unwrap();
        path.to_path_buf()
    }

    /// A serving certificate for `sans` (DNS names or IP addresses).
    pub fn server(&self, dir: &Path, stem: &str, sans: &[&str]) -> Signed {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, sans[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(dir, stem, params)
    }

    /// A client certificate: CN = user, O = groups.
    pub fn client(&self, dir: &Path, stem: &str, user: &str, groups: &[&str]) -> Signed {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(dir, stem, params)
    }

    fn sign(&self, dir: &Path, stem: &str, params: CertificateParams) -> Signed {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let signed = Signed {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&signed.cert, cert.pem()).unwrap();
        std::fs::write(&signed.key, key.serialize_pem()).unwrap();
        signed
    }
}

/// A bare key pair (the service-account token signing key): (private key file, public key file).
pub fn key_files(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let (private, public) = (
        dir.join(format!("{stem}.key")),
        dir.join(format!("{stem}.pub")),
    );
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    (private, public)
}
