//! Admission requests built from plain objects, for the offline `review` and for reconcilers.

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde_json::{Value, json};

/// Build the CREATE request the API server would send for `obj` (namespace `default_ns` when the
/// object names none).
pub fn create_request(
    uid: &str,
    obj: &Value,
    default_ns: &str,
) -> Result<AdmissionRequest<DynamicObject>, String> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or("object has no apiVersion")?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("object has no kind")?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(default_ns);
    let mut object = obj.clone();
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.entry("namespace").or_insert_with(|| json!(namespace));
    }
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let resource = json!({"group": group, "version": version, "resource": format!("{}s", kind.to_ascii_lowercase())});
    let req = json!({
        "uid": uid,
        "kind": gvk,
        "resource": resource,
        "requestKind": gvk,
        "requestResource": resource,
        "name": name,
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "carto-wi-webhook-review"},
        "object": object,
        "oldObject": null,
        "dryRun": true,
    });
    serde_json::from_value(req).map_err(|e| format!("not a Kubernetes object: {e}"))
}
