//! Reading configuration out of ConfigMap objects and env files (text in, typed data out; no I/O).

use std::collections::BTreeMap;

use serde_json::Value;

use super::extra::ExtraEnvAllowlist;
use super::model::WorkloadIdentityConfig;
use super::problem::ConfigProblem;

/// What the configuration reads of a ConfigMap, from a JSON value or from the admission core's
/// view of the object.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigMapShape<'a> {
    /// The object's `kind`, when it is a string (and is to be checked).
    pub kind: Option<&'a str>,
    /// `data`.
    pub data: DataShape<'a>,
    /// The keys of `binaryData` (when it is a map).
    pub binary_keys: Vec<&'a str>,
}

/// A ConfigMap's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum DataShape<'a> {
    /// Absent or `null`.
    Absent,
    /// Not a map.
    NotAMap,
    /// Each key once, in document order, with its value when it is a string.
    Entries(Vec<(&'a str, Option<&'a str>)>),
}

impl<'a> ConfigMapShape<'a> {
    /// The shape of a JSON object (`None` when `obj` is not an object).
    pub fn of_value(obj: &'a Value) -> Option<Self> {
        let map = obj.as_object()?;
        let data = match map.get("data") {
            None | Some(Value::Null) => DataShape::Absent,
            Some(Value::Object(d)) => {
                DataShape::Entries(d.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
            }
            Some(_) => DataShape::NotAMap,
        };
        let binary_keys = match map.get("binaryData") {
            Some(Value::Object(b)) => b.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        Some(Self {
            kind: map.get("kind").and_then(Value::as_str),
            data,
            binary_keys,
        })
    }

    /// The `data`, with every problem of shape (non-string values, `binaryData`, another kind).
    pub fn data(&self) -> Result<BTreeMap<String, String>, Vec<ConfigProblem>> {
        if let Some(kind) = self.kind
            && kind != "ConfigMap"
        {
            return Err(vec![ConfigProblem::Malformed(format!(
                "expected kind ConfigMap, found {kind}"
            ))]);
        }
        let mut problems = Vec::new();
        let mut data = BTreeMap::new();
        match &self.data {
            DataShape::Absent => {}
            DataShape::Entries(d) => {
                for (k, v) in d {
                    match v {
                        Some(s) => {
                            data.insert((*k).to_owned(), (*s).to_owned());
                        }
                        None => problems.push(ConfigProblem::NotAString {
                            key: (*k).to_owned(),
                        }),
                    }
                }
            }
            DataShape::NotAMap => problems.push(ConfigProblem::Malformed(
                "data must be a map of string keys to string values".into(),
            )),
        }
        problems.extend(self.binary_keys.iter().map(|k| ConfigProblem::BinaryData {
            key: (*k).to_owned(),
        }));
        if problems.is_empty() {
            Ok(data)
        } else {
            Err(problems)
        }
    }

    /// The typed configuration, reporting every problem at once.
    pub fn config(
        &self,
        allowed: &ExtraEnvAllowlist,
    ) -> Result<WorkloadIdentityConfig, Vec<ConfigProblem>> {
        let mut shape = match self.data() {
            Ok(data) => return WorkloadIdentityConfig::from_data(&data, allowed),
            Err(shape) => shape,
        };
        // Still report the rule problems of the string values we could read (of a ConfigMap:
        // another kind's data is not a configuration).
        let other_kind = self.kind.is_some_and(|k| k != "ConfigMap");
        if !other_kind && let DataShape::Entries(d) = &self.data {
            let strings: BTreeMap<String, String> = d
                .iter()
                .filter_map(|(k, v)| v.map(|s| ((*k).to_owned(), s.to_owned())))
                .collect();
            if let Err(more) = WorkloadIdentityConfig::from_data(&strings, allowed) {
                shape.extend(more.into_iter().filter(|p| match p {
                    ConfigProblem::Missing { key, .. } => !d.iter().any(|(k, _)| k == key),
                    _ => true,
                }));
            }
        }
        Err(shape)
    }
}

fn not_an_object() -> Vec<ConfigProblem> {
    vec![ConfigProblem::Malformed(
        "expected a ConfigMap object".into(),
    )]
}

/// The `data` of a ConfigMap object, with every problem of shape (non-string values, `binaryData`).
pub fn config_map_data(obj: &Value) -> Result<BTreeMap<String, String>, Vec<ConfigProblem>> {
    ConfigMapShape::of_value(obj)
        .ok_or_else(not_an_object)?
        .data()
}

/// Parse a ConfigMap object into a typed configuration, reporting every problem at once.
pub fn config_from_object(
    obj: &Value,
    allowed: &ExtraEnvAllowlist,
) -> Result<WorkloadIdentityConfig, Vec<ConfigProblem>> {
    ConfigMapShape::of_value(obj)
        .ok_or_else(not_an_object)?
        .config(allowed)
}

/// Parse `KEY=VALUE` lines (blank lines and `#` comments ignored, optional `export `, one pair of
/// matching surrounding quotes removed). Values are otherwise taken exactly as written.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, Vec<ConfigProblem>> {
    let mut data = BTreeMap::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
        let Some((key, value)) = trimmed.split_once('=') else {
            problems.push(ConfigProblem::Malformed(format!(
                "line {}: expected KEY=VALUE, found {line:?}",
                n + 1
            )));
            continue;
        };
        let value = unquote(value);
        if data.insert(key.to_owned(), value.to_owned()).is_some() {
            problems.push(ConfigProblem::Malformed(format!(
                "line {}: {key} is set twice",
                n + 1
            )));
        }
    }
    if problems.is_empty() {
        Ok(data)
    } else {
        Err(problems)
    }
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_file() {
        let d = parse_env_file("# c\nexport A=\"x y\"\nB='z'\n\nC= keep \n").unwrap();
        assert_eq!(d["A"], "x y");
        assert_eq!(d["B"], "z");
        assert_eq!(d["C"], " keep ");
        assert!(parse_env_file("NOPE\nA=1\nA=2").unwrap_err().len() == 2);
    }

    #[test]
    fn shape_problems() {
        let e = config_map_data(
            &json!({"kind":"ConfigMap","data":{"A":true},"binaryData":{"B":"eA=="}}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![
                ConfigProblem::NotAString { key: "A".into() },
                ConfigProblem::BinaryData { key: "B".into() }
            ]
        );
        assert!(config_map_data(&json!({"kind":"Secret"})).is_err());
        assert!(
            config_map_data(&json!({"kind":"ConfigMap","data":null}))
                .unwrap()
                .is_empty()
        );
    }
}
