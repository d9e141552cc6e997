//! Access tokens for the IAM API, chosen as Google's client libraries do: the file named by
//! `GOOGLE_APPLICATION_CREDENTIALS` when set, else the metadata server (the webhook's own
//! Workload Identity on GKE), at `GCE_METADATA_HOST` when set. A token is reused until shortly
//! before it expires.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{HttpClient, HttpError};
use super::key_file::{KeyFile, KeyFileError, MAX_KEY_FILE};

const METADATA_HOST: &str = "metadata.google.internal";
const METADATA_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is refreshed this long before Google says it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The credentials file cannot be read.
    #[error("GOOGLE_APPLICATION_CREDENTIALS: cannot read {}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The credentials file is not usable.
    #[error("GOOGLE_APPLICATION_CREDENTIALS {}: {error}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: KeyFileError,
    },
    /// The token endpoint could not be reached.
    #[error("token endpoint: {0}")]
    Http(#[from] HttpError),
    /// The token endpoint refused.
    #[error("token endpoint {url} answered {status}")]
    Status {
        /// The endpoint.
        url: String,
        /// Its answer.
        status: StatusCode,
    },
    /// The token endpoint's answer is not a token.
    #[error("token endpoint {url} answered no access token: {error}")]
    Response {
        /// The endpoint.
        url: String,
        /// Why.
        error: serde_json::Error,
    },
}

/// Where tokens come from.
#[derive(Debug)]
enum Source {
    Metadata { url: String },
    File { path: PathBuf, key: KeyFile },
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: u64,
}

#[derive(Debug)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// A token source with its cache.
#[derive(Debug)]
pub struct Credentials {
    source: Source,
    http: HttpClient,
    cached: Mutex<Option<Cached>>,
}

impl Credentials {
    /// Choose the source from the process environment.
    pub fn from_env(http: HttpClient) -> Result<Self, CredentialsError> {
        Self::from_lookup(http, |name| std::env::var(name).ok())
    }

    /// Choose the source from `lookup` (the environment, or a test's table).
    pub fn from_lookup(
        http: HttpClient,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CredentialsError> {
        let nonempty = |name| lookup(name).filter(|v: &String| !v.trim().is_empty());
        let source = match nonempty("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => load_key_file(PathBuf::from(path))?,
            None => Source::Metadata {
                url: metadata_token_url(nonempty("GCE_METADATA_HOST").as_deref()),
            },
        };
        Ok(Self {
            source,
            http,
            cached: Mutex::new(None),
        })
    }

    /// What the tokens are for, for logs: the metadata server or the key file.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Metadata { url } => format!("metadata server {url}"),
            Source::File { path, .. } => format!("credentials file {}", path.display()),
        }
    }

    /// A valid access token, fetched only when the cached one is close to expiry.
    pub async fn token(&self) -> Result<String, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
        Ok(token)
    }

    async fn fetch(&self) -> Result<(String, Duration), CredentialsError> {
        let (url, req) = match &self.source {
            Source::Metadata { url } => (url.clone(), metadata_request(url)),
            Source::File { path, key } => {
                let (url, form) =
                    key.token_request()
                        .map_err(|error| CredentialsError::KeyFile {
                            path: path.clone(),
                            error,
                        })?;
                (url.to_owned(), form_request(url, form))
            }
        };
        let req = req.map_err(|_| HttpError::Url(url.clone(), "not a valid URI"))?;
        let resp = self.http.send(req, MAX_TOKEN_RESPONSE).await?;
        if !resp.status.is_success() {
            return Err(CredentialsError::Status {
                url,
                status: resp.status,
            });
        }
        let parsed: TokenResponse = serde_json::from_slice(&resp.body)
            .map_err(|error| CredentialsError::Response { url, error })?;
        Ok((parsed.access_token, Duration::from_secs(parsed.expires_in)))
    }
}

fn load_key_file(path: PathBuf) -> Result<Source, CredentialsError> {
    use std::io::Read;
    let read = |error| CredentialsError::Read {
        path: path.clone(),
        error,
    };
    let mut text = Vec::new();
    std::fs::File::open(&path)
        .map_err(read)?
        .take(MAX_KEY_FILE)
        .read_to_end(&mut text)
        .map_err(read)?;
    match KeyFile::parse(&text) {
        Ok(key) => Ok(Source::File { path, key }),
        Err(error) => Err(CredentialsError::KeyFile { path, error }),
    }
}

/// The token URL on the metadata server, or on `GCE_METADATA_HOST` (`host[:port]`).
pub fn metadata_token_url(host: Option<&str>) -> String {
    let host = host.map(str::trim).unwrap_or(METADATA_HOST);
    format!("http://{host}{METADATA_TOKEN_PATH}")
}

fn metadata_request(url: &str) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("Metadata-Flavor", "Google")
        .body(Full::default())
}

fn form_request(url: &str, form: String) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
    Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(Full::new(Bytes::from(form)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_defaults_to_the_gke_server() {
        assert_eq!(
            metadata_token_url(None),
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }

    #[test]
    fn metadata_host_override_takes_host_and_port() {
        assert_eq!(
            metadata_token_url(Some("127.0.0.1:8080")),
            "http://127.0.0.1:8080/computeMetadata/v1/instance/service-accounts/default/token"
        );
    }
}
