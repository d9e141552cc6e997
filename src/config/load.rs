//! Reading a configuration out of a file's text: the ConfigMap of a YAML file (`review`, `check`,
//! the standalone `--config`), and what the standalone server makes of it. No I/O.

use std::sync::Arc;

use serde_json::Value;

use super::extra::ExtraEnvAllowlist;
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

/// A ConfigMap of a file, with where it is.
struct Found {
    map: Value,
    /// The line of its document in the file.
    line: usize,
    /// Its 1-based position in a `List`, when it is an item of one.
    item: Option<usize>,
}

impl Found {
    fn name(&self) -> Option<&str> {
        self.map.pointer("/metadata/name").and_then(Value::as_str)
    }

    fn place(&self) -> String {
        match self.item {
            Some(i) => format!("item {i} of the List at line {}", self.line),
            None => format!("the document at line {}", self.line),
        }
    }
}

/// Every ConfigMap of a YAML stream, including the items of a `List`.
fn config_maps(text: &str) -> Result<Vec<Found>, String> {
    let mut maps = Vec::new();
    for doc in yaml::split_documents(text) {
        if doc.is_empty() {
            continue;
        }
        let v = yaml::parse_document(&doc)?;
        let is_config_map = |v: &Value| v.get("kind").and_then(Value::as_str) == Some("ConfigMap");
        // `kubectl get configmap -l ... -o yaml` wraps objects in a `List`.
        match v.get("items").and_then(Value::as_array) {
            Some(items) if v.get("kind").and_then(Value::as_str) == Some("List") => {
                maps.extend(
                    items
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| is_config_map(v))
                        .map(|(i, map)| Found {
                            map: map.clone(),
                            line: doc.line,
                            item: Some(i + 1),
                        }),
                );
            }
            _ if is_config_map(&v) => maps.push(Found {
                map: v,
                line: doc.line,
                item: None,
            }),
            _ => {}
        }
    }
    Ok(maps)
}

/// Read the ConfigMap out of a YAML file (the only ConfigMap, or the one named `preferred_name`).
/// An error means the file could not be understood at all, or is ambiguous: two ConfigMaps
/// named `preferred_name` are an error naming both, never silently the first.
pub fn load_config_map(
    text: &str,
    preferred_name: &str,
    allowed: &ExtraEnvAllowlist,
) -> Result<LoadedConfigMap, String> {
    let mut maps = config_maps(text)?;
    let named: Vec<&Found> = maps
        .iter()
        .filter(|m| m.name() == Some(preferred_name))
        .collect();
    if let [first, second, ..] = named[..] {
        return Err(format!(
            "{} ConfigMaps named {preferred_name:?} in the file ({} and {}): keep only one",
            named.len(),
            first.place(),
            second.place()
        ));
    }
    let chosen = match maps.len() {
        0 => return Err("no ConfigMap found in the file".into()),
        1 => maps.remove(0),
        n => {
            let i = maps
                .iter()
                .position(|m| m.name() == Some(preferred_name))
                .ok_or_else(|| {
                    format!("{n} ConfigMaps in the file and none is named {preferred_name:?}")
                })?;
            maps.remove(i)
        }
    };
    let text_at = |pointer: &str| {
        chosen
            .map
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(LoadedConfigMap {
        name: text_at("/metadata/name"),
        namespace: text_at("/metadata/namespace"),
        config: config_from_object(&chosen.map, allowed),
    })
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// The file is over [`super::file_source::MAX_CONFIG_FILE_BYTES`].
    #[error("{0}; a configuration file is a single small ConfigMap")]
    TooLarge(String),
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
    allowed: &ExtraEnvAllowlist,
) -> Result<WorkloadIdentityConfig, ConfigFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigFileError::NotText)?;
    let loaded = load_config_map(text, config_map, allowed).map_err(ConfigFileError::Unreadable)?;
    loaded.config.map_err(ConfigFileError::Invalid)
}

/// The snapshot of standalone mode: `config` is the default of every namespace.
pub fn standalone_snapshot(config: WorkloadIdentityConfig) -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::Valid(Arc::new(config)))
}
