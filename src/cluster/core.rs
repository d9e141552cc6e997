//! The admission core applied to objects read from the API (the same decisions as admission).

use serde_json::Value;

use crate::admission::{Decision, Kind, request, target};
use crate::config::ConfigSnapshot;
use crate::settings::{INJECT_LABEL, Settings};

/// What mutation would do to `obj` (a CREATE or UPDATE of it) in `namespace`.
pub fn mutate(
    kind: Kind,
    obj: &Value,
    namespace: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    match request::create_request("reconcile", obj, namespace) {
        Ok(req) => crate::admission::mutate(&req, snapshot, settings),
        Err(_) => Decision::allow(kind),
    }
}

/// Is `obj` one of the webhook's targets (opt-outs aside)?
pub fn is_target(kind: Kind, obj: &Value, settings: &Settings) -> bool {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let opted_out = obj
        .pointer("/metadata/labels")
        .and_then(|l| l.get(INJECT_LABEL))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("false"));
    let target = match kind {
        Kind::ServiceAccount => name == settings.service_account,
        Kind::Deployment => target::is_target_deployment(name, obj, settings),
        _ => false,
    };
    target && !opted_out
}
