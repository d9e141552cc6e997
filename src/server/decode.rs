//! An AdmissionReview `admission.k8s.io/v1` body → its request, as the core's borrowing view.
//! A body that is not one gets a [`Rejected`] saying why (another version, another kind, not
//! JSON), with the uid when one was readable.

use std::borrow::Cow;

use serde::Deserialize;

use super::metrics::HttpError;
use crate::admission::view::{self, ReviewRequest};
use crate::admission::wire::API_VERSION;

/// The AdmissionReview envelope, read in one pass without kube-core's flattened `TypeMeta`
/// (which makes serde buffer the whole document before reading it again); the request is the
/// core's borrowing view, which skips what the core never reads.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(
        rename = "apiVersion",
        borrow,
        default,
        deserialize_with = "view::opt_cow"
    )]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "view::opt_cow")]
    kind: Option<Cow<'a, str>>,
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
    let env: Envelope = match view::from_json(body) {
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use serde_json::{Value, json};

    use super::*;

    fn review(object: Value) -> Value {
        let gvk = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        json!({
            "apiVersion": API_VERSION,
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": gvk,
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "name": "d",
                "namespace": "ns",
                "operation": "CREATE",
                "userInfo": {"username": "u"},
                "object": object,
                "oldObject": null,
            },
        })
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "c", "env": [{"name": "A", "value": "1"}]},
            ]}}},
        })
    }

    fn body_with(placeholder_value: &str) -> Vec<u8> {
        let mut obj = deployment();
        obj["metadata"]["managedFields"] = json!("PLACEHOLDER");
        serde_json::to_string(&review(obj))
            .unwrap()
            .replace("\"PLACEHOLDER\"", placeholder_value)
            .into_bytes()
    }

    /// The body cut where the member the core skips starts, and `value` there (unclosed).
    fn body_cut_at(value: &str) -> Vec<u8> {
        let text = String::from_utf8(body_with("\"PLACEHOLDER\"")).unwrap();
        let at = text.find("\"PLACEHOLDER\"").unwrap();
        format!("{}{value}", &text[..at]).into_bytes()
    }

    fn rejected(body: &[u8]) -> String {
        match parse(body) {
            Ok(_) => panic!("accepted: {}", String::from_utf8_lossy(body)),
            Err(r) => {
                assert!(matches!(r.reason, HttpError::InvalidJson), "{}", r.message);
                r.message
            }
        }
    }

    #[test]
    fn a_review_parses_with_its_strings_borrowed() {
        let body = serde_json::to_vec(&review(deployment())).unwrap();
        let req = parse(&body).unwrap_or_else(|r| panic!("refused: {}", r.message));
        assert!(matches!(req.uid, Cow::Borrowed("u-1")));
        let obj = req.object.as_ref().unwrap();
        let env = obj.pod_spec().unwrap().list("containers")[0]
            .get()
            .unwrap()
            .env
            .get()
            .unwrap();
        assert!(matches!(
            env[0].get().unwrap().value.get(),
            Some(Cow::Borrowed("1"))
        ));
    }

    #[test]
    fn an_escaped_envelope_is_read_too() {
        let text = serde_json::to_string(&review(deployment())).unwrap();
        let body = text.replacen("admission.k8s.io/v1", "admission.k8s.io\\/v1", 1);
        assert!(body.contains(r"k8s.io\/v1"));
        assert!(parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_utf8_is_refused_wherever_it_is() {
        // In a member the core skips, then in one it reads: both refused, placed.
        for member in ["managedFields", "name"] {
            let mut obj = deployment();
            obj["metadata"][member] = json!("PLACEHOLDER");
            let text = serde_json::to_string(&review(obj)).unwrap();
            let at = text.find("PLACEHOLDER").unwrap();
            let body = text.replace("PLACEHOLDER", "a\u{e9}b").into_bytes();
            let mut body = body;
            body[at + 1] = 0xff; // the first byte of "é", now alone and invalid
            let msg = rejected(&body);
            assert!(msg.contains("not a valid AdmissionReview"), "{msg}");
            assert!(
                msg.contains(&format!("invalid UTF-8 at line 1 column {}", at + 2)),
                "{msg}"
            );
        }
        let mut body = serde_json::to_vec(&review(deployment())).unwrap();
        body.splice(0..0, b"\n\n  ".iter().copied());
        body.extend_from_slice(b"\n \xc3");
        assert!(rejected(&body).contains("invalid UTF-8 at line 4 column 2"));
    }

    #[test]
    fn deep_nesting_is_skipped_without_overflowing_the_stack() {
        // serde_json skips a value without recursing, and every view has a fixed depth: a
        // million levels are read (and skipped) with a byte of memory each.
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        assert!(parse(&body_with(&deep)).is_ok());
        let mut obj = deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"] =
            json!("PLACEHOLDER");
        let text = serde_json::to_string(&review(obj)).unwrap();
        let deep = format!("{}1{}", "{\"a\":".repeat(200_000), "}".repeat(200_000));
        assert!(parse(text.replace("\"PLACEHOLDER\"", &deep).as_bytes()).is_ok());
        // Unclosed: an error, never a hang.
        let msg = rejected(&body_cut_at(&"[".repeat(1_000_000)));
        assert!(msg.contains("EOF while parsing a list at line 1"), "{msg}");
    }

    #[test]
    fn duplicate_members_the_core_reads_are_refused() {
        let text = serde_json::to_string(&review(deployment())).unwrap();
        let body = text.replacen("\"uid\":\"u-1\"", "\"uid\":\"u-1\",\"uid\":\"u-2\"", 1);
        let msg = rejected(body.as_bytes());
        assert!(msg.contains("duplicate field `uid` at line 1"), "{msg}");
    }

    #[test]
    fn numbers_out_of_range_are_refused_where_read() {
        // Skipped: only its syntax is checked.
        assert!(parse(&body_with("1e999")).is_ok());
        assert!(parse(&body_with("123456789012345678901234567890")).is_ok());
        let text = serde_json::to_string(&review(deployment())).unwrap();
        let body = text.replacen("\"value\":\"1\"", "\"value\":1e999", 1);
        let msg = rejected(body.as_bytes());
        assert!(msg.contains("number out of range at line 1"), "{msg}");
        assert!(rejected(&body_with("1e")).contains("line 1"));
    }

    #[test]
    fn huge_strings_are_read_or_refused_by_their_bounds() {
        let long = "x".repeat(2_000_000);
        assert!(parse(&body_with(&format!("\"{long}\""))).is_ok());
        let text = serde_json::to_string(&review(deployment())).unwrap();
        let body = text.replacen("\"uid\":\"u-1\"", &format!("\"uid\":\"{long}\""), 1);
        let msg = rejected(body.as_bytes());
        assert!(msg.contains("uid is 2000000 bytes long"), "{msg}");
        // Unterminated.
        let msg = rejected(&body_cut_at(&format!("\"{long}")));
        assert!(msg.contains("EOF while parsing a string"), "{msg}");
    }
}
