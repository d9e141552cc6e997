//! Service-account keys for the key-file tests: an RSA key from `openssl` and the JSON file
//! Google issues for it, its `token_uri` on the stand-in.

use ring::signature::KeyPair;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;

use super::StandIn;

/// An RSA key made by `openssl`, as PKCS#8 PEM, and its public key (DER RSAPublicKey).
pub fn rsa_key() -> (String, Vec<u8>) {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl is installed (tests/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    (pem, pair.public_key().as_ref().to_vec())
}

pub fn key_file(dir: &tempfile::TempDir, stand: &StandIn, pem: &str) -> String {
    let path = dir.path().join("key.json");
    let json = json!({
        "type": "service_account",
        "project_id": "acme-ops",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": "carto-wi-webhook@acme-ops.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": format!("{}/token", stand.iam_url),
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}
