//! The AdmissionReview response as it goes on the wire.
//!
//! kube-core's `AdmissionResponse` serializes `patch` as a JSON array of numbers (kube-rs issue
//! #1781), three times larger than the base64 string the admission API documents; this module
//! writes the documented form.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use super::Decision;
use super::limits::cut;

/// The longest message of a 400 answer, in chars.
pub const MAX_INVALID_MESSAGE: usize = 1024;

/// `admission.k8s.io/v1`.
pub const API_VERSION: &str = "admission.k8s.io/v1";

/// An AdmissionReview carrying only a response.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReviewResponse {
    api_version: &'static str,
    kind: &'static str,
    /// The response.
    pub response: Response,
}

/// The `response` of an AdmissionReview.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// Echo of the request's uid.
    pub uid: String,
    /// Whether the request is admitted.
    pub allowed: bool,
    /// Why not, when denied or invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Base64 of the JSON patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
    /// `JSONPatch` when a patch is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<&'static str>,
    /// Warnings shown to the client.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Audit annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
}

/// A `metav1.Status` with the fields the API server reads.
#[derive(Debug, Serialize)]
pub struct Status {
    /// HTTP-like code: 403 for a denial, 400 for a bad request.
    pub code: u16,
    /// Human-readable message (shown by kubectl).
    pub message: String,
    /// Machine-readable reason.
    pub reason: &'static str,
}

impl ReviewResponse {
    /// Wrap a core decision for request `uid`.
    pub fn from_decision(uid: String, d: &Decision) -> Self {
        let patch = d.patch.as_ref().map(|p| {
            let json = serde_json::to_vec(p).expect("a JSON patch always serializes");
            base64::engine::general_purpose::STANDARD.encode(json)
        });
        Self::new(Response {
            uid,
            allowed: d.allowed(),
            status: d.denial.as_ref().map(|den| Status {
                code: 403,
                message: den.to_string(),
                reason: "Forbidden",
            }),
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: d.warnings.clone(),
            audit_annotations: d.audit_annotations.clone(),
        })
    }

    /// A request that could not be understood (kept with its uid when one was readable). The
    /// message is cut to [`MAX_INVALID_MESSAGE`] chars: parse errors may quote the input.
    pub fn invalid(uid: String, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self::new(Response {
            uid,
            allowed: false,
            status: Some(Status {
                code: 400,
                message: cut(&message, MAX_INVALID_MESSAGE).into_owned(),
                reason: "BadRequest",
            }),
            patch: None,
            patch_type: None,
            warnings: Vec::new(),
            audit_annotations: BTreeMap::new(),
        })
    }

    fn new(response: Response) -> Self {
        Self {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response,
        }
    }
}
