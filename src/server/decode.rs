//! An AdmissionReview `admission.k8s.io/v1` body → its request, as the core's borrowing view.
//! A body that is not one gets a [`Rejected`] saying why (another version, another kind, not
//! JSON), with the uid when one was readable.

use serde::Deserialize;

use super::metrics::HttpError;
use crate::admission::view::ReviewRequest;
use crate::admission::wire::API_VERSION;

/// The AdmissionReview envelope, read in one pass without kube-core's flattened `TypeMeta`
/// (which makes serde buffer the whole document before reading it again); the request is the
/// core's borrowing view, which skips what the core never reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    request: Option<ReviewRequest<'a>>,
}

/// Only the version, to explain a body that does not parse as a v1 review.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

/// Why a body is not a review the core can decide.
pub(crate) struct Rejected {
    pub(crate) reason: HttpError,
    pub(crate) uid: String,
    pub(crate) message: String,
}

fn unsupported_version(v: Option<&str>) -> String {
    format!(
        "unsupported AdmissionReview version {}: this webhook speaks {API_VERSION} only \
         (set admissionReviewVersions: [\"v1\"] in the webhook configuration)",
        v.map_or_else(|| "(no apiVersion)".to_owned(), |v| format!("{v:?}"))
    )
}

fn wrong_kind(k: Option<&str>) -> String {
    format!(
        "expected kind \"AdmissionReview\", found {}",
        k.map_or_else(|| "no kind".to_owned(), |k| format!("{k:?}"))
    )
}

/// Parse an AdmissionReview `admission.k8s.io/v1` body into its request.
pub(crate) fn parse(body: &[u8]) -> Result<ReviewRequest<'_>, Rejected> {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => {
            // Explain a review of another version, or of another kind, before a schema error.
            if let Ok(p) = serde_json::from_slice::<VersionProbe>(body) {
                if p.api_version.as_deref() != Some(API_VERSION) {
                    return Err(Rejected {
                        reason: HttpError::UnsupportedVersion,
                        uid: String::new(),
                        message: unsupported_version(p.api_version.as_deref()),
                    });
                }
                if p.kind.as_deref() != Some("AdmissionReview") {
                    return Err(Rejected {
                        reason: HttpError::InvalidJson,
                        uid: String::new(),
                        message: wrong_kind(p.kind.as_deref()),
                    });
                }
            }
            return Err(Rejected {
                reason: HttpError::InvalidJson,
                uid: String::new(),
                message: format!("the body is not a valid AdmissionReview: {e}"),
            });
        }
    };
    let uid = || {
        env.request
            .as_ref()
            .map(|r| r.uid.to_string())
            .unwrap_or_default()
    };
    if env.api_version.as_deref() != Some(API_VERSION) {
        return Err(Rejected {
            reason: HttpError::UnsupportedVersion,
            uid: uid(),
            message: unsupported_version(env.api_version.as_deref()),
        });
    }
    if env.kind.as_deref() != Some("AdmissionReview") {
        return Err(Rejected {
            reason: HttpError::InvalidJson,
            uid: uid(),
            message: wrong_kind(env.kind.as_deref()),
        });
    }
    let Some(req) = env.request else {
        return Err(Rejected {
            reason: HttpError::MissingRequest,
            uid: String::new(),
            message: "the AdmissionReview has no request".into(),
        });
    };
    Ok(req)
}
