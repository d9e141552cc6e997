//! Reading a configuration out of a file's text: the ConfigMap of a YAML file (`review`, `check`,
//! the standalone `--config`), and what the standalone server makes of it. No I/O.

use std::sync::Arc;

use serde_json::Value;

use super::model::WorkloadIdentityConfig;
use super::problem::ConfigProblem;
use super::snapshot::{ConfigEntry, ConfigSnapshot};
use super::source::config_from_object;
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
        config: config_from_object(&chosen),
    })
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The file is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotText,
    /// The file holds no readable ConfigMap.
    #[error("{0}")]
    Unreadable(String),
    /// The ConfigMap breaks the rules.
    #[error("the ConfigMap is invalid ({} problems):\n{}", .0.len(), list(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("- {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse a standalone config file's content.
pub fn parse_config(
    bytes: &[u8],
    config_map: &str,
) -> Result<WorkloadIdentityConfig, ConfigFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigFileError::NotText)?;
    let loaded = load_config_map(text, config_map).map_err(ConfigFileError::Unreadable)?;
    loaded.config.map_err(ConfigFileError::Invalid)
}

/// The snapshot of standalone mode: `config` is the default of every namespace.
pub fn standalone_snapshot(config: WorkloadIdentityConfig) -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::Valid(Arc::new(config)))
}
