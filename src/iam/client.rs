//! The IAM API call: `POST {endpoint}/v1/projects/-/serviceAccounts/{email}:getIamPolicy` with
//! `options.requestedPolicyVersion = 3` (so conditional bindings are returned as such).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode};

use super::credentials::{Credentials, CredentialsError};
use super::http::{HttpClient, HttpError};
use super::policy::{Policy, UnknownReason};

/// Default IAM endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://iam.googleapis.com";
/// A service account policy holds at most 1,500 members; this is far above that.
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Why a policy could not be read, classified for the state and the request counter.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No access token.
    #[error("no access token: {0}")]
    Credentials(#[from] CredentialsError),
    /// The email cannot be put in a URL path.
    #[error("{0:?} is not a service account email")]
    Email(String),
    /// Network, TLS or timeout.
    #[error("{0}")]
    Transport(#[from] HttpError),
    /// 403: the webhook's identity lacks `iam.serviceAccounts.getIamPolicy`.
    #[error("permission denied (403): grant iam.serviceAccounts.getIamPolicy on the account")]
    PermissionDenied,
    /// 404: the service account does not exist.
    #[error("service account not found (404)")]
    NotFound,
    /// 429: quota; retry after the given delay if any.
    #[error("rate limited (429)")]
    RateLimited(Option<Duration>),
    /// Any other status.
    #[error("IAM API answered {0}")]
    Status(StatusCode, Option<Duration>),
    /// 200 with a body that is not a policy.
    #[error("IAM API answered a body that is not a policy: {0}")]
    Body(serde_json::Error),
}

impl FetchError {
    /// What the failure makes the binding state.
    pub fn reason(&self) -> UnknownReason {
        match self {
            Self::Credentials(_) => UnknownReason::Credentials,
            Self::PermissionDenied => UnknownReason::PermissionDenied,
            // No service account can have an email that is not one.
            Self::NotFound | Self::Email(_) => UnknownReason::NotFound,
            _ => UnknownReason::ApiError,
        }
    }

    /// Label of `carto_wi_iam_requests{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "credentials_error",
            Self::Email(_) => "invalid_email",
            Self::Transport(_) => "transport_error",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::RateLimited(_) => "rate_limited",
            Self::Status(..) => "server_error",
            Self::Body(_) => "bad_response",
        }
    }

    /// Whether this is a passing trouble to retry with back-off (not a lasting answer).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            Self::PermissionDenied | Self::NotFound | Self::Email(_)
        )
    }

    /// The delay the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(d) | Self::Status(_, d) => *d,
            _ => None,
        }
    }
}

/// Every outcome label of the request counter.
pub const OUTCOMES: [&str; 9] = [
    "ok",
    "credentials_error",
    "invalid_email",
    "transport_error",
    "permission_denied",
    "not_found",
    "rate_limited",
    "server_error",
    "bad_response",
];

/// Reads service account policies.
#[derive(Debug)]
pub struct IamClient {
    endpoint: String,
    http: HttpClient,
    credentials: Credentials,
}

impl IamClient {
    /// A client of `endpoint` (e.g. [`DEFAULT_ENDPOINT`]) authenticating with `credentials`.
    pub fn new(endpoint: &str, http: HttpClient, credentials: Credentials) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            http,
            credentials,
        }
    }

    /// The IAM policy of the service account `email`.
    pub async fn get_iam_policy(&self, email: &str) -> Result<Policy, FetchError> {
        if !is_email_path_safe(email) {
            return Err(FetchError::Email(email.to_owned()));
        }
        let token = self.credentials.token().await?;
        let url = format!(
            "{}/v1/projects/-/serviceAccounts/{email}:getIamPolicy",
            self.endpoint
        );
        let req = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(
                br#"{"options":{"requestedPolicyVersion":3}}"#,
            )))
            .map_err(|_| HttpError::Url(url.clone(), "not a valid URI"))?;
        let resp = self.http.send(req, MAX_POLICY_BYTES).await?;
        match resp.status {
            StatusCode::OK => serde_json::from_slice(&resp.body).map_err(FetchError::Body),
            StatusCode::FORBIDDEN => Err(FetchError::PermissionDenied),
            StatusCode::NOT_FOUND => Err(FetchError::NotFound),
            StatusCode::TOO_MANY_REQUESTS => Err(FetchError::RateLimited(resp.retry_after)),
            other => Err(FetchError::Status(other, resp.retry_after)),
        }
    }
}

/// Emails go into the URL path unescaped: allow only what Google account emails contain.
fn is_email_path_safe(email: &str) -> bool {
    !email.is_empty()
        && email.len() <= 254
        && email.contains('@')
        && email
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_with_path_characters_are_refused() {
        assert!(is_email_path_safe("carto-wi@acme.iam.gserviceaccount.com"));
        assert!(!is_email_path_safe("a/../b@x"));
        assert!(!is_email_path_safe("a@b:setIamPolicy"));
        assert!(!is_email_path_safe("a@b?x=1"));
        assert!(!is_email_path_safe(""));
    }

    #[test]
    fn lasting_answers_are_not_transient() {
        assert!(!FetchError::PermissionDenied.is_transient());
        assert!(!FetchError::NotFound.is_transient());
        assert!(FetchError::RateLimited(None).is_transient());
        assert!(FetchError::Status(StatusCode::BAD_GATEWAY, None).is_transient());
    }

    #[test]
    fn every_outcome_is_labelled() {
        for e in [
            FetchError::Email(String::new()),
            FetchError::PermissionDenied,
            FetchError::NotFound,
            FetchError::RateLimited(None),
            FetchError::Status(StatusCode::INTERNAL_SERVER_ERROR, None),
        ] {
            assert!(OUTCOMES.contains(&e.outcome()), "{}", e.outcome());
        }
    }
}
