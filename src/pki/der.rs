//! Just enough of X.509 (DER) to plan rotations: the validity, the subject's common name and the
//! public key. rcgen reads certificates only with its `x509-parser` feature, not enabled here;
//! signatures and names are checked by rustls's verifier, not here.

use time::{Date, Month, PrimitiveDateTime, Time};

/// What the planner needs of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// The subject's common name (UTF8String or PrintableString), if any.
    pub common_name: Option<String>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an X.509 certificate: {0}")]
pub struct DerError(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const VERSION_TAG: u8 = 0xa0;
/// 2.5.4.3, id-at-commonName.
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One TLV: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), DerError> {
    let short = DerError("truncated");
    let (&tag, rest) = input.split_first().ok_or(short.clone())?;
    let (&first, rest) = rest.split_first().ok_or(short.clone())?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(DerError("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(short);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], want: u8) -> Result<(&[u8], &[u8]), DerError> {
    match tlv(input)? {
        (tag, content, rest) if tag == want => Ok((content, rest)),
        _ => Err(DerError("unexpected field")),
    }
}

/// Read the facts of one DER certificate.
pub fn cert_facts(der: &[u8]) -> Result<CertFacts, DerError> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if tbs.first() == Some(&VERSION_TAG) {
        rest = tlv(rest)?.2;
    }
    let rest = tlv(rest)?.2; // serial
    let (_, rest) = expect(rest, SEQUENCE)?; // signature algorithm
    let (_, rest) = expect(rest, SEQUENCE)?; // issuer
    let (validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (spki_len, _) = {
        let (_, _, after) = tlv(rest)?;
        (rest.len() - after.len(), after)
    };
    let (not_before, after) = time_field(validity)?;
    let (not_after, _) = time_field(after)?;
    Ok(CertFacts {
        not_before,
        not_after,
        common_name: common_name(subject)?,
        spki: rest[..spki_len].to_vec(),
    })
}

fn time_field(input: &[u8]) -> Result<(i64, &[u8]), DerError> {
    let (tag, content, rest) = tlv(input)?;
    let text = std::str::from_utf8(content).map_err(|_| DerError("bad time"))?;
    let unix = match tag {
        UTC_TIME => parse_time(text, 2)?,
        GENERALIZED_TIME => parse_time(text, 4)?,
        _ => return Err(DerError("bad time")),
    };
    Ok((unix, rest))
}

/// `YYMMDDHHMMSSZ` (UTCTime, years 1950–2049) or `YYYYMMDDHHMMSSZ` (GeneralizedTime).
fn parse_time(text: &str, year_digits: usize) -> Result<i64, DerError> {
    let bad = DerError("bad time");
    let digits = text.strip_suffix('Z').ok_or(bad.clone())?;
    if digits.len() != year_digits + 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    let num = |from: usize, len: usize| -> i32 {
        digits[from..from + len]
            .bytes()
            .fold(0, |acc, b| acc * 10 + i32::from(b - b'0'))
    };
    let mut year = num(0, year_digits);
    if year_digits == 2 {
        year += if year < 50 { 2000 } else { 1900 };
    }
    let at = year_digits;
    let month = Month::try_from(u8::try_from(num(at, 2)).map_err(|_| bad.clone())?)
        .map_err(|_| bad.clone())?;
    let hms = |i: usize| u8::try_from(num(at + i, 2)).map_err(|_| bad.clone());
    let date = Date::from_calendar_date(year, month, hms(2)?).map_err(|_| bad.clone())?;
    let time = Time::from_hms(hms(4)?, hms(6)?, hms(8)?).map_err(|_| bad.clone())?;
    Ok(PrimitiveDateTime::new(date, time)
        .assume_utc()
        .unix_timestamp())
}

/// The first common name of an RDN sequence.
fn common_name(mut rdns: &[u8]) -> Result<Option<String>, DerError> {
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, SET)?;
        rdns = rest;
        let (attr, _) = expect(set, SEQUENCE)?;
        let (oid, value) = expect(attr, OID)?;
        if oid != CN_OID {
            continue;
        }
        let (tag, text, _) = tlv(value)?;
        if tag != UTF8_STRING && tag != PRINTABLE_STRING {
            return Err(DerError("unsupported common name type"));
        }
        let text = std::str::from_utf8(text).map_err(|_| DerError("bad common name"))?;
        return Ok(Some(text.to_owned()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::CertificateAuthority;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn reads_what_rcgen_wrote() {
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let ca = CertificateAuthority::with_validity(
            "test CA 1",
            std::time::Duration::from_secs(86_400),
        )
        .unwrap();
        let facts = cert_facts(&der(ca.cert_pem())).unwrap();
        assert_eq!(facts.common_name.as_deref(), Some("test CA 1"));
        assert!((facts.not_after - before - 86_400).abs() <= 2);
        assert!((facts.not_before - (before - 3600)).abs() <= 2);
        let key = rcgen::KeyPair::from_pem(ca.key_pem()).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(facts.spki, key.subject_public_key_info());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("700101000000Z", 2), Ok(0));
        assert_eq!(parse_time("491231235959Z", 2), Ok(2_524_607_999));
        assert_eq!(parse_time("20500101000000Z", 4), Ok(2_524_608_000));
        assert!(parse_time("20501301000000Z", 4).is_err());
        assert!(parse_time("2050010100000Z", 4).is_err());
        assert!(parse_time("20500101000000", 4).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = der(CertificateAuthority::new("x", 1).unwrap().cert_pem());
        for len in 0..good.len() {
            assert!(cert_facts(&good[..len]).is_err(), "prefix {len}");
        }
        assert!(cert_facts(b"\x30\x84\xff\xff\xff\xff").is_err());
        assert!(cert_facts(&[0u8; 64]).is_err());
    }
}
