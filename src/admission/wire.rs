//! The AdmissionReview response as it goes on the wire.
//!
//! kube-core's `AdmissionResponse` serializes `patch` as a JSON array of numbers (kube-rs issue
//! #1781), three times larger than the base64 string the admission API documents; this module
//! writes the documented form.

use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
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
            BASE64.encode(json)
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

/// The AdmissionReview answer to request `uid` for decision `d`, as JSON: byte for byte what
/// `serde_json::to_vec(&ReviewResponse::from_decision(uid, d))` writes.
pub fn response_body(uid: &str, d: &Decision) -> Vec<u8> {
    PATCH_JSON.with_borrow_mut(|patch| {
        patch.clear();
        if let Some(p) = &d.patch {
            serde_json::to_writer(&mut *patch, p).expect("a JSON patch always serializes");
        }
        let denial = d.denial.as_ref().map(ToString::to_string);
        let parts = Parts {
            uid,
            allowed: d.allowed(),
            denial: denial.as_deref(),
            patch: d.patch.as_ref().map(|_| patch.as_slice()),
            warnings: &d.warnings,
            audit_annotations: &d.audit_annotations,
        };
        let mut out = Vec::with_capacity(parts.len());
        parts.write(&mut out);
        debug_assert_eq!(
            out.len(),
            out.capacity(),
            "the answer's size was computed exactly"
        );
        out
    })
}

thread_local! {
    /// The JSON patch before its base64 encoding, reused from one answer to the next on a thread.
    static PATCH_JSON: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What goes into an answer, each part already in its final text.
struct Parts<'a> {
    uid: &'a str,
    allowed: bool,
    denial: Option<&'a str>,
    /// The JSON patch, base64-encoded as it is written.
    patch: Option<&'a [u8]>,
    warnings: &'a [String],
    audit_annotations: &'a BTreeMap<String, String>,
}

const HEAD: &str =
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#;
const ALLOWED: &str = r#","allowed":"#;
const STATUS_HEAD: &str = r#","status":{"code":403,"message":"#;
const STATUS_TAIL: &str = r#","reason":"Forbidden"}"#;
const PATCH_HEAD: &str = r#","patch":""#;
const PATCH_TAIL: &str = r#"","patchType":"JSONPatch""#;
const WARNINGS_HEAD: &str = r#","warnings":["#;
const ANNOTATIONS_HEAD: &str = r#","auditAnnotations":{"#;
const TAIL: &str = "}}";

impl Parts<'_> {
    /// The exact length of the answer in bytes.
    fn len(&self) -> usize {
        let mut n = HEAD.len() + quoted_len(self.uid) + ALLOWED.len();
        n += if self.allowed { 4 } else { 5 };
        if let Some(m) = self.denial {
            n += STATUS_HEAD.len() + quoted_len(m) + STATUS_TAIL.len();
        }
        if let Some(p) = self.patch {
            let encoded = base64::encoded_len(p.len(), true).expect("a patch fits in memory");
            n += PATCH_HEAD.len() + encoded + PATCH_TAIL.len();
        }
        if !self.warnings.is_empty() {
            // Commas between the warnings and the closing `]`: one per warning.
            n += WARNINGS_HEAD.len() + self.warnings.len();
            n += self.warnings.iter().map(|w| quoted_len(w)).sum::<usize>();
        }
        if !self.audit_annotations.is_empty() {
            n += ANNOTATIONS_HEAD.len() + 2 * self.audit_annotations.len(); // `:` and `,` or `}`
            let pairs = self.audit_annotations.iter();
            n += pairs
                .map(|(k, v)| quoted_len(k) + quoted_len(v))
                .sum::<usize>();
        }
        n + TAIL.len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(HEAD.as_bytes());
        write_quoted(out, self.uid);
        out.extend_from_slice(ALLOWED.as_bytes());
        out.extend_from_slice(if self.allowed { b"true" } else { b"false" });
        if let Some(m) = self.denial {
            out.extend_from_slice(STATUS_HEAD.as_bytes());
            write_quoted(out, m);
            out.extend_from_slice(STATUS_TAIL.as_bytes());
        }
        if let Some(p) = self.patch {
            out.extend_from_slice(PATCH_HEAD.as_bytes());
            let start = out.len();
            out.resize(start + base64::encoded_len(p.len(), true).unwrap_or(0), 0);
            let written = BASE64.encode_slice(p, &mut out[start..]);
            debug_assert_eq!(written.ok(), Some(out.len() - start));
            out.extend_from_slice(PATCH_TAIL.as_bytes());
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(WARNINGS_HEAD.as_bytes());
            for (i, w) in self.warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_quoted(out, w);
            }
            out.push(b']');
        }
        if !self.audit_annotations.is_empty() {
            out.extend_from_slice(ANNOTATIONS_HEAD.as_bytes());
            for (i, (k, v)) in self.audit_annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_quoted(out, k);
                out.push(b':');
                write_quoted(out, v);
            }
            out.push(b'}');
        }
        out.extend_from_slice(TAIL.as_bytes());
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it.
fn write_quoted(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(out, s).expect("writing into a Vec cannot fail");
}

/// The length of `s` as serde_json writes it: quotes, and `\"`, `\\`, `\b`, `\f`, `\n`, `\r`,
/// `\t` for those, `\u00XX` for other control characters below U+0020.
fn quoted_len(s: &str) -> usize {
    2 + s.len() + s.bytes().map(escape_extra).sum::<usize>()
}

fn escape_extra(b: u8) -> usize {
    match b {
        b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
        0x00..=0x1f => 5,
        _ => 0,
    }
}
