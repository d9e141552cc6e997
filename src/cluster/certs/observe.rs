//! Reading the Secret and the webhook configurations into the planner's terms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use rcgen::PublicKeyData;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pki::der::cert_facts;
use crate::pki::plan::{Ca, Leaf, SecretState, Stored};
use crate::pki::{PairSource, certified_key};

/// The serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// The serving certificate's key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// Every CA to trust (PEM): what goes into the `caBundle`.
pub const CA_CRT: &str = "ca.crt";
/// The key of the CA that signs (PEM); its certificate is the one of `ca.crt` it matches.
pub const CA_KEY: &str = "ca.key";

/// The CA that can sign, as stored.
#[derive(Debug, Clone)]
pub struct SignerPem {
    /// Its subject's common name (to re-create the issuer).
    pub common_name: String,
    /// Its certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
}

/// The Secret, read.
#[derive(Debug, Clone)]
pub struct Observed {
    /// For the planner.
    pub state: SecretState,
    /// The signing CA, when the state is usable.
    pub signer: Option<SignerPem>,
}

/// Every readable certificate of a PEM bundle; unreadable blocks are left out.
pub fn parse_cas(pem: &[u8]) -> Vec<Ca> {
    CertificateDer::pem_slice_iter(pem)
        .map_while(Result::ok)
        .filter_map(|der| {
            let facts = cert_facts(&der).ok()?;
            Some(Ca {
                pem: to_pem(&der),
                der: der.to_vec(),
                not_after: facts.not_after,
            })
        })
        .collect()
}

/// One CERTIFICATE block.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The bundle as one PEM text.
pub fn bundle_pem(cas: &[Ca]) -> String {
    cas.iter().map(|c| c.pem.as_str()).collect()
}

/// Read the Secret's data (`None`: no Secret) for a serving certificate valid for `names`.
pub fn observe_secret(
    data: Option<&BTreeMap<String, ByteString>>,
    names: &[String],
    now: i64,
    provider: &Arc<CryptoProvider>,
) -> Observed {
    let Some(data) = data else {
        return Observed {
            state: SecretState::Absent,
            signer: None,
        };
    };
    let get = |key: &str| data.get(key).map_or(&[][..], |b| b.0.as_slice());
    let bundle = parse_cas(get(CA_CRT));
    let signer = match find_signer(get(CA_KEY), &bundle, now) {
        Ok(s) => s,
        Err(reason) => {
            return Observed {
                state: SecretState::Unusable {
                    reason,
                    readable: bundle,
                },
                signer: None,
            };
        }
    };
    let leaf = read_leaf(get(TLS_CRT), get(TLS_KEY), &signer.0, names, now, provider);
    Observed {
        state: SecretState::Usable(Stored {
            signer: signer.0,
            bundle,
            leaf,
        }),
        signer: Some(signer.1),
    }
}

/// The certificate of `ca.crt` that `ca.key` belongs to, if it can still sign.
fn find_signer(key_pem: &[u8], bundle: &[Ca], now: i64) -> Result<(Ca, SignerPem), String> {
    let key_pem = std::str::from_utf8(key_pem).map_err(|_| format!("{CA_KEY} is not text"))?;
    if key_pem.trim().is_empty() {
        return Err(format!("no {CA_KEY}"));
    }
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| format!("{CA_KEY}: {e}"))?;
    let spki = key.subject_public_key_info();
    let (ca, facts) = bundle
        .iter()
        .find_map(|ca| {
            let facts = cert_facts(&ca.der).ok()?;
            (facts.spki == spki).then_some((ca, facts))
        })
        .ok_or_else(|| format!("{CA_KEY} matches no certificate of {CA_CRT}"))?;
    if ca.not_after <= now {
        return Err("the CA has expired".into());
    }
    let common_name = facts
        .common_name
        .ok_or_else(|| "the CA has no common name".to_owned())?;
    Ok((
        ca.clone(),
        SignerPem {
            common_name,
            cert_pem: ca.pem.clone(),
            key_pem: key_pem.to_owned(),
        },
    ))
}

fn read_leaf(
    cert_pem: &[u8],
    key_pem: &[u8],
    signer: &Ca,
    names: &[String],
    now: i64,
    provider: &Arc<CryptoProvider>,
) -> Option<Leaf> {
    let src = secret_source();
    let ck = certified_key(cert_pem, key_pem, &src, provider).ok()?;
    let leaf = ck.cert.first()?;
    let facts = cert_facts(leaf).ok()?;
    Some(Leaf {
        not_after: facts.not_after,
        trusted: verifies(leaf, &signer.der, names, now, provider),
    })
}

/// How the Secret's pair is named in error messages.
pub fn secret_source() -> PairSource {
    PairSource {
        cert: format!("Secret key {TLS_CRT}").into(),
        key: format!("Secret key {TLS_KEY}").into(),
    }
}

/// Whether a client trusting only `ca` accepts `leaf` at `now` for every name.
pub fn verifies(
    leaf: &CertificateDer<'_>,
    ca: &[u8],
    names: &[String],
    now: i64,
    provider: &Arc<CryptoProvider>,
) -> bool {
    let mut roots = RootCertStore::empty();
    if roots.add(CertificateDer::from(ca.to_vec())).is_err() {
        return false;
    }
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()
    else {
        return false;
    };
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    names.iter().all(|name| {
        ServerName::try_from(name.as_str()).is_ok_and(|server| {
            verifier
                .verify_server_cert(leaf, &[], &server, &[], at)
                .is_ok()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertificateAuthority;

    const HOUR: Duration = Duration::from_secs(3600);

    fn names() -> Vec<String> {
        vec!["svc.ns.svc".into(), "localhost".into(), "127.0.0.1".into()]
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    fn provider() -> Arc<CryptoProvider> {
        crate::pki::provider()
    }

    #[test]
    fn a_stored_pair_is_usable_and_trusted() {
        let ca = CertificateAuthority::with_validity("CA one", 24 * HOUR).unwrap();
        let other = CertificateAuthority::with_validity("CA two", 24 * HOUR).unwrap();
        let leaf = ca.issue_server_valid_for(&names(), HOUR).unwrap();
        let bundle = format!("{}{}", other.cert_pem(), ca.cert_pem());
        let d = data(&[
            (CA_CRT, &bundle),
            (CA_KEY, ca.key_pem()),
            (TLS_CRT, &leaf.cert_pem),
            (TLS_KEY, &leaf.key_pem),
        ]);
        let seen = observe_secret(Some(&d), &names(), now(), &provider());
        let SecretState::Usable(stored) = &seen.state else {
            panic!("{:?}", seen.state)
        };
        assert_eq!(stored.bundle.len(), 2);
        assert_eq!(stored.signer, stored.bundle[1]);
        assert!(stored.leaf.as_ref().unwrap().trusted);
        assert_eq!(seen.signer.unwrap().common_name, "CA one");

        let more = [names(), vec!["elsewhere.example".into()]].concat();
        let seen = observe_secret(Some(&d), &more, now(), &provider());
        let SecretState::Usable(stored) = &seen.state else {
            panic!()
        };
        assert!(!stored.leaf.as_ref().unwrap().trusted, "a name is missing");
    }

    #[test]
    fn a_leaf_from_another_ca_is_not_trusted() {
        let ca = CertificateAuthority::with_validity("CA one", 24 * HOUR).unwrap();
        let other = CertificateAuthority::with_validity("CA two", 24 * HOUR).unwrap();
        let leaf = other.issue_server_valid_for(&names(), HOUR).unwrap();
        let d = data(&[
            (CA_CRT, ca.cert_pem()),
            (CA_KEY, ca.key_pem()),
            (TLS_CRT, &leaf.cert_pem),
            (TLS_KEY, &leaf.key_pem),
        ]);
        let seen = observe_secret(Some(&d), &names(), now(), &provider());
        let SecretState::Usable(stored) = &seen.state else {
            panic!()
        };
        assert!(!stored.leaf.as_ref().unwrap().trusted);
    }

    #[test]
    fn corrupt_or_mismatched_ca_key_is_unusable_but_keeps_readable_cas() {
        let ca = CertificateAuthority::with_validity("CA one", 24 * HOUR).unwrap();
        let other = CertificateAuthority::with_validity("CA two", 24 * HOUR).unwrap();
        for key in ["garbage", other.key_pem(), ""] {
            let d = data(&[(CA_CRT, ca.cert_pem()), (CA_KEY, key)]);
            let seen = observe_secret(Some(&d), &names(), now(), &provider());
            let SecretState::Unusable { readable, .. } = &seen.state else {
                panic!("{:?}", seen.state)
            };
            assert_eq!(readable.len(), 1);
        }
        let d = data(&[(CA_CRT, "not pem"), (TLS_CRT, "x")]);
        let seen = observe_secret(Some(&d), &names(), now(), &provider());
        assert!(matches!(seen.state, SecretState::Unusable { .. }));
    }

    #[test]
    fn expired_ca_is_unusable() {
        let ca = CertificateAuthority::with_validity("CA one", HOUR).unwrap();
        let d = data(&[(CA_CRT, ca.cert_pem()), (CA_KEY, ca.key_pem())]);
        let seen = observe_secret(Some(&d), &names(), now() + 7200, &provider());
        assert!(matches!(seen.state, SecretState::Unusable { .. }));
    }

    #[test]
    fn reissue_from_a_reread_ca_chains_to_it() {
        let ca = CertificateAuthority::with_validity("CA again", 24 * HOUR).unwrap();
        let again =
            CertificateAuthority::from_pem("CA again", ca.cert_pem(), ca.key_pem()).unwrap();
        let leaf = again.issue_server_valid_for(&names(), HOUR).unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert!(verifies(&der, &ca_der, &names(), now(), &provider()));
    }

    #[test]
    fn pem_round_trip() {
        let ca = CertificateAuthority::with_validity("CA", HOUR).unwrap();
        let cas = parse_cas(ca.cert_pem().as_bytes());
        assert_eq!(parse_cas(bundle_pem(&cas).as_bytes()), cas);
        let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(cas[0].der, der.to_vec());
    }
}
