//! The admission core applied to objects read from the API: the same decisions as admission.

use serde_json::Value;

use crate::admission::view::Object;
use crate::admission::{Decision, Kind, target};
use crate::config::ConfigSnapshot;
use crate::settings::Settings;

/// An object as the core reads it, or why it cannot be read.
pub fn view(obj: &Value) -> Result<Object<'_>, serde_json::Error> {
    Object::from_value(obj)
}

/// What mutation does to `obj` (a CREATE or UPDATE of it) in `namespace`.
pub fn mutate(
    kind: Kind,
    obj: &Object<'_>,
    namespace: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    crate::admission::mutate_object(kind, obj, namespace, snapshot, settings)
}

/// Is `obj` one of the webhook's targets (the namespace's opt-out aside)?
pub fn is_target(kind: Kind, obj: &Object<'_>, settings: &Settings) -> bool {
    target::is_target(kind, obj.name(), obj, settings)
}
