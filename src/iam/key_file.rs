//! `GOOGLE_APPLICATION_CREDENTIALS` files: a service-account key (an RS256-signed JWT exchanged
//! at the key's `token_uri`, RFC 7523) or `gcloud`'s authorized_user (a refresh token).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// The scope of the token: getIamPolicy is covered by cloud-platform.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Key files are small; a bigger one is not a key file.
pub const MAX_KEY_FILE: u64 = 64 * 1024;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Not JSON of a known shape.
    #[error("not a Google credentials JSON file: {0}")]
    Json(serde_json::Error),
    /// A `type` this client does not handle.
    #[error("credentials type {0:?} is not supported (use service_account or authorized_user)")]
    Type(String),
    /// The private key is not a PKCS#8 RSA key.
    #[error("private_key is not a PKCS#8 RSA key: {0}")]
    Key(String),
}

/// A parsed credentials file.
#[derive(Debug)]
pub enum KeyFile {
    /// A service-account key.
    ServiceAccount(Box<ServiceAccountKey>),
    /// A user's refresh token (`gcloud auth application-default login`).
    AuthorizedUser {
        /// OAuth client id.
        client_id: String,
        /// OAuth client secret.
        client_secret: String,
        /// Refresh token.
        refresh_token: String,
        /// Where to exchange it.
        token_uri: String,
    },
}

/// A service-account key, its RSA key parsed once.
pub struct ServiceAccountKey {
    /// `client_email`, the JWT issuer.
    pub client_email: String,
    /// `private_key_id`, the JWT `kid`.
    pub private_key_id: Option<String>,
    /// Where the JWT is exchanged for an access token.
    pub token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawKeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

impl KeyFile {
    /// Parse the JSON text of a credentials file.
    pub fn parse(text: &[u8]) -> Result<Self, KeyFileError> {
        let raw: RawKeyFile = serde_json::from_slice(text).map_err(KeyFileError::Json)?;
        let token_uri = raw
            .token_uri
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let missing = |field: &str| KeyFileError::Key(format!("{field} is missing"));
        match raw.kind.as_str() {
            "service_account" => {
                let pem = raw.private_key.ok_or_else(|| missing("private_key"))?;
                Ok(Self::ServiceAccount(Box::new(ServiceAccountKey {
                    client_email: raw.client_email.ok_or_else(|| missing("client_email"))?,
                    private_key_id: raw.private_key_id,
                    token_uri,
                    key: rsa_key(&pem)?,
                })))
            }
            "authorized_user" => Ok(Self::AuthorizedUser {
                client_id: raw.client_id.ok_or_else(|| missing("client_id"))?,
                client_secret: raw.client_secret.ok_or_else(|| missing("client_secret"))?,
                refresh_token: raw.refresh_token.ok_or_else(|| missing("refresh_token"))?,
                token_uri,
            }),
            other => Err(KeyFileError::Type(other.to_owned())),
        }
    }

    /// The token endpoint and the form body that obtains an access token.
    pub fn token_request(&self) -> Result<(&str, String), KeyFileError> {
        match self {
            Self::ServiceAccount(key) => Ok((
                &key.token_uri,
                format!(
                    "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
                    key.assertion(unix_now())?
                ),
            )),
            Self::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => Ok((
                token_uri,
                format!(
                    "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                    form_encode(client_id),
                    form_encode(client_secret),
                    form_encode(refresh_token)
                ),
            )),
        }
    }
}

fn rsa_key(pem: &str) -> Result<RsaKeyPair, KeyFileError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| KeyFileError::Key(e.to_string()))?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| KeyFileError::Key(e.to_string()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ServiceAccountKey {
    /// The signed JWT `header.claims.signature` asking `token_uri` for a cloud-platform token.
    pub fn assertion(&self, now: u64) -> Result<String, KeyFileError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.private_key_id {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .map_err(|_| KeyFileError::Key("RSA signing failed".to_owned()))?;
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// `application/x-www-form-urlencoded` for a value (unreserved characters kept).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_type_is_refused_with_its_name() {
        let e = KeyFile::parse(br#"{"type":"external_account"}"#).unwrap_err();
        assert!(e.to_string().contains("external_account"), "{e}");
    }

    #[test]
    fn service_account_without_key_is_refused() {
        let e = KeyFile::parse(br#"{"type":"service_account","client_email":"a@b"}"#).unwrap_err();
        assert!(e.to_string().contains("private_key"), "{e}");
    }

    #[test]
    fn garbage_key_is_refused() {
        let e = KeyFile::parse(
            br#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap_err();
        assert!(matches!(e, KeyFileError::Key(_)), "{e}");
    }

    #[test]
    fn authorized_user_posts_an_encoded_refresh_token() {
        let f = KeyFile::parse(
            br#"{"type":"authorized_user","client_id":"id.apps","client_secret":"s&t","refresh_token":"1//r+t"}"#,
        )
        .unwrap();
        let (uri, body) = f.token_request().unwrap();
        assert_eq!(uri, DEFAULT_TOKEN_URI);
        assert_eq!(
            body,
            "grant_type=refresh_token&client_id=id.apps&client_secret=s%26t&refresh_token=1%2F%2Fr%2Bt"
        );
    }
}
