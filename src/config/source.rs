//! Reading configuration out of ConfigMap objects and env files (text in, typed data out; no I/O).

use std::collections::BTreeMap;

use serde_json::Value;

use super::model::WorkloadIdentityConfig;
use super::problem::ConfigProblem;

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
pub fn config_from_object(obj: &Value) -> Result<WorkloadIdentityConfig, Vec<ConfigProblem>> {
    match config_map_data(obj) {
        Ok(data) => WorkloadIdentityConfig::from_data(&data),
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
                if let Err(more) = WorkloadIdentityConfig::from_data(&strings) {
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
