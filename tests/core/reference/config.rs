//! The pre-view `config_map_data` / `config_from_object`, on a JSON value.

use std::collections::BTreeMap;

use carto_wi_webhook::config::{ConfigProblem, ExtraEnvAllowlist, WorkloadIdentityConfig};
use serde_json::Value;

/// The `data` of a ConfigMap object, with every problem of shape (non-string values, `binaryData`).
pub fn config_map_data(obj: &Value) -> Result<BTreeMap<String, String>, Vec<ConfigProblem>> {
    let Some(map) = obj.as_object() else {
        return Err(vec![ConfigProblem::Malformed(
            "expected a ConfigMap object".into(),
        )]);
    };
    if let Some(kind) = map.get("kind").and_then(Value::as_str)
        && kind != "ConfigMap"
    {
        return Err(vec![ConfigProblem::Malformed(format!(
            "expected kind ConfigMap, found {kind}"
        ))]);
    }
    let mut problems = Vec::new();
    let mut data = BTreeMap::new();
    match map.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d)) => {
            for (k, v) in d {
                match v {
                    Value::String(s) => {
                        data.insert(k.clone(), s.clone());
                    }
                    _ => problems.push(ConfigProblem::NotAString { key: k.clone() }),
                }
            }
        }
        Some(_) => problems.push(ConfigProblem::Malformed(
            "data must be a map of string keys to string values".into(),
        )),
    }
    if let Some(Value::Object(b)) = map.get("binaryData") {
        problems.extend(
            b.keys()
                .map(|k| ConfigProblem::BinaryData { key: k.clone() }),
        );
    }
    if problems.is_empty() {
        Ok(data)
    } else {
        Err(problems)
    }
}

/// Parse a ConfigMap object into a typed configuration, reporting every problem at once.
pub fn config_from_object(
    obj: &Value,
    allowed: &ExtraEnvAllowlist,
) -> Result<WorkloadIdentityConfig, Vec<ConfigProblem>> {
    match config_map_data(obj) {
        Ok(data) => WorkloadIdentityConfig::from_data(&data, allowed),
        Err(mut shape) => {
            // Still report the rule problems of the string values we could read (of a
            // ConfigMap: another kind's data is not a configuration).
            let other_kind = obj
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k != "ConfigMap");
            if !other_kind && let Some(Value::Object(d)) = obj.get("data") {
                let strings: BTreeMap<String, String> = d
                    .iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect();
                if let Err(more) = WorkloadIdentityConfig::from_data(&strings, allowed) {
                    shape.extend(more.into_iter().filter(|p| match p {
                        ConfigProblem::Missing { key, .. } => !d.contains_key(*key),
                        _ => true,
                    }));
                }
            }
            Err(shape)
        }
    }
}
