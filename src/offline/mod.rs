//! The offline commands, `check` and `review`: files in, text out, decisions by the same core the
//! server uses. Pure functions over strings so they are tested without processes.

mod check;
mod review;

pub use check::{CheckReport, check_config_map, check_env_file};
pub use review::{OutputFormat, ReviewReport, review_stream};

use serde_json::Value;

use crate::config::{self, ConfigProblem, WorkloadIdentityConfig};
use crate::yaml;

/// A ConfigMap read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfigMap {
    /// `metadata.name`, when given.
    pub name: Option<String>,
    /// `metadata.namespace`, when given.
    pub namespace: Option<String>,
    /// The configuration, or every problem with it.
    pub config: Result<WorkloadIdentityConfig, Vec<ConfigProblem>>,
}

/// Read the ConfigMap out of a YAML file (the only ConfigMap, or the one named `preferred_name`).
/// An error means the file could not be understood at all.
pub fn load_config_map(text: &str, preferred_name: &str) -> Result<LoadedConfigMap, String> {
    let mut maps = Vec::new();
    for doc in yaml::split_documents(text) {
        if doc.is_empty() {
            continue;
        }
        let v = yaml::parse(doc.text).map_err(|e| format!("line {}: {e}", doc.line))?;
        // `kubectl get configmap -l ... -o yaml` wraps objects in a `List`.
        let items = match v.get("items").and_then(Value::as_array) {
            Some(items) if v.get("kind").and_then(Value::as_str) == Some("List") => items.clone(),
            _ => vec![v],
        };
        maps.extend(
            items
                .into_iter()
                .filter(|v| v.get("kind").and_then(Value::as_str) == Some("ConfigMap")),
        );
    }
    let name_of = |v: &Value| {
        v.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let chosen = match maps.len() {
        0 => return Err("no ConfigMap found in the file".into()),
        1 => maps.remove(0),
        n => {
            let i = maps
                .iter()
                .position(|m| name_of(m).as_deref() == Some(preferred_name))
                .ok_or_else(|| {
                    format!("{n} ConfigMaps in the file and none is named {preferred_name:?}")
                })?;
            maps.remove(i)
        }
    };
    Ok(LoadedConfigMap {
        name: name_of(&chosen),
        namespace: chosen
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .map(str::to_owned),
        config: config::config_from_object(&chosen),
    })
}
