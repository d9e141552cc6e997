//! Both admission webhooks, from the request body to the response body, as the router answers
//! them (`server::router::answer_body`), with a valid configuration for every namespace.
//!
//! Asserted for any body: no panic; the answer is an AdmissionReview of at most
//! [`MAX_RESPONSE_BYTES`]; a 400 only for a body that is not a review; the mutating webhook's
//! patch (base64 JSON Patch, as on the wire) applies cleanly to the request's object; the patched
//! object passes validation (a ConfigMap may still be denied for its own content) and a second
//! mutation yields no patch.

use base64::Engine;
use carto_wi_webhook::admission::view::ReviewRequest;
use carto_wi_webhook::admission::{Kind, Webhook};
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::server::router::answer_body;
use carto_wi_webhook::settings::Settings;
use serde_json::Value;

use crate::{MAX_RESPONSE_BYTES, acme, settings_for, snapshot_of};

/// The checks of one input.
pub fn check(data: &[u8]) {
    let snapshot = snapshot_of(acme());
    check_review(data, &snapshot, &settings_for(data));
}

/// Answer `body` with both webhooks against `snapshot` (which resolves a valid configuration for
/// every namespace) and check the answers.
pub fn check_review(body: &[u8], snapshot: &ConfigSnapshot, settings: &Settings) {
    let validated = answer(Webhook::Validate, body, snapshot, settings);
    let Some(mutated) = answer(Webhook::Mutate, body, snapshot, settings) else {
        assert!(validated.is_none(), "only one webhook refused the body");
        return;
    };
    assert!(validated.is_some(), "only one webhook refused the body");
    let Some(patch) = patch_of(&mutated) else {
        return;
    };
    assert_eq!(
        mutated["allowed"], true,
        "a patch comes with an allowed answer"
    );
    // The server checks only the syntax of what it does not read (e.g. a number out of range in
    // an unknown member); the API server never sends such a body, and a JSON value cannot hold it.
    let Ok(mut review) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let object = &mut review["request"]["object"];
    if let Err(e) = json_patch::patch(object, &patch) {
        panic!(
            "the patch does not apply: {e}\npatch: {}",
            serde_json::to_string(&patch).unwrap()
        );
    }
    let patched = serde_json::to_vec(&review).expect("a JSON value serializes");
    let again = answer(Webhook::Mutate, &patched, snapshot, settings)
        .expect("the patched review is still a review");
    assert_eq!(patch_of(&again), None, "a second mutation yields no patch");
    let validated = answer(Webhook::Validate, &patched, snapshot, settings)
        .expect("the patched review is still a review");
    let kind = ReviewRequest::from_value(&review["request"]).map(|r| r.target_kind());
    // An `env` that is not a list is left untouched by mutation (with a warning) and then denied
    // by validation: right for a shape the API server's schema never lets through.
    let malformed = has_non_list_env(&review["request"]["object"]);
    // An extra variable set by valueFrom is never replaced by mutation, and denied by validation.
    let kept_reference = has_extra_by_reference(&review["request"]["object"]);
    if validated["allowed"] != true
        && !matches!(kind, Ok(Kind::ConfigMap))
        && !malformed
        && !kept_reference
    {
        panic!(
            "the patched object is denied: {}",
            validated["status"]["message"]
        );
    }
}

/// Does a container of the pod template carry an `env` that is neither absent, null nor a list?
fn has_non_list_env(object: &Value) -> bool {
    let pod = &object["spec"]["template"]["spec"];
    ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod[*f].as_array())
        .flatten()
        .any(|c| c.get("env").is_some_and(|e| !e.is_null() && !e.is_array()))
}

/// Does a container set one of the acme config's extra variables by `valueFrom`?
fn has_extra_by_reference(object: &Value) -> bool {
    let pod = &object["spec"]["template"]["spec"];
    let acme = crate::acme();
    let extras: Vec<&str> = acme.extra.iter().map(|(k, _)| k.as_str()).collect();
    ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod[*f].as_array())
        .flatten()
        .filter_map(|c| c.get("env")?.as_array())
        .flatten()
        .any(|e| {
            e["name"].as_str().is_some_and(|n| extras.contains(&n))
                && e.get("valueFrom").is_some_and(|v| !v.is_null())
        })
}

/// The `response` of the answer to `body`, or `None` when the body is refused as not a review.
fn answer(
    webhook: Webhook,
    body: &[u8],
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Option<Value> {
    let (status, out) = answer_body(webhook, body, snapshot, settings);
    assert!(
        out.len() <= MAX_RESPONSE_BYTES,
        "a {} byte answer to a {} byte request",
        out.len(),
        body.len()
    );
    let mut review: Value = serde_json::from_slice(&out).expect("the answer is JSON");
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = review["response"].take();
    assert!(
        response["allowed"].is_boolean(),
        "the answer says allowed or not"
    );
    match status.as_u16() {
        200 => Some(response),
        400 => {
            assert_eq!(response["allowed"], false);
            assert_eq!(response["status"]["code"], 400);
            None
        }
        other => panic!("status {other}"),
    }
}

/// The JSON Patch of a response, decoded from base64 as the API server does.
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let b64 = response
        .get("patch")?
        .as_str()
        .expect("the patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let json = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("the patch is base64");
    let patch: json_patch::Patch =
        serde_json::from_slice(&json).expect("the patch is a JSON Patch");
    assert!(!patch.0.is_empty(), "a patch is never empty");
    Some(patch)
}
