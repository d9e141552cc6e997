//! An object before and after a patch, as what a person reviews: each env variable per
//! container and each annotation, old → new.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "field", rename_all = "camelCase")]
pub enum FieldChange {
    /// An env variable of a container (or init container).
    #[serde(rename_all = "camelCase")]
    Env {
        /// The container's name.
        container: String,
        /// The variable.
        name: String,
        /// Its value before (`None`: absent).
        old: Option<String>,
        /// Its value after (`None`: removed).
        new: Option<String>,
    },
    /// An annotation of the object, or of its pod template.
    #[serde(rename_all = "camelCase")]
    Annotation {
        /// The annotation's key.
        key: String,
        /// On the pod template (else on the object itself).
        pod_template: bool,
        /// Its value before.
        old: Option<String>,
        /// Its value after.
        new: Option<String>,
    },
}

/// Every env and annotation difference from `before` to `after`.
pub fn changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = annotation_changes(before, after, "/metadata/annotations", false);
    out.extend(annotation_changes(
        before,
        after,
        "/spec/template/metadata/annotations",
        true,
    ));
    for list in ["initContainers", "containers"] {
        let pointer = format!("/spec/template/spec/{list}");
        let (old, new) = (containers(before, &pointer), containers(after, &pointer));
        for (container, new_env) in &new {
            let old_env = old.get(container).cloned().unwrap_or_default();
            out.extend(env_changes(container, &old_env, new_env));
        }
        for (container, old_env) in old.iter().filter(|(c, _)| !new.contains_key(*c)) {
            out.extend(env_changes(container, old_env, &BTreeMap::new()));
        }
    }
    out
}

/// Does the pod template differ (the Deployment's pods roll)?
pub fn rolls(before: &Value, after: &Value) -> bool {
    before.pointer("/spec/template") != after.pointer("/spec/template")
}

fn annotation_changes(
    before: &Value,
    after: &Value,
    pointer: &str,
    pod_template: bool,
) -> Vec<FieldChange> {
    let (old, new) = (string_map(before, pointer), string_map(after, pointer));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| FieldChange::Annotation {
            key: k.clone(),
            pod_template,
            old: old.get(k).cloned(),
            new: new.get(k).cloned(),
        })
        .collect()
}

fn string_map(v: &Value, pointer: &str) -> BTreeMap<String, String> {
    v.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Container name → (env name → rendered value), first occurrence of a name kept.
fn containers(v: &Value, pointer: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for c in v
        .pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut env = BTreeMap::new();
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = e.get("name").and_then(Value::as_str) {
                env.entry(n.to_owned()).or_insert_with(|| env_value(e));
            }
        }
        out.entry(name).or_insert(env);
    }
    out
}

/// A variable's value as shown: its `value`, else its `valueFrom` as JSON.
fn env_value(e: &Value) -> String {
    match (e.get("value"), e.get("valueFrom")) {
        (Some(Value::String(s)), _) => s.clone(),
        (_, Some(from)) => format!("valueFrom {from}"),
        _ => String::new(),
    }
}

fn env_changes(
    container: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<FieldChange> {
    let names: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter(|n| old.get(*n) != new.get(*n))
        .map(|n| FieldChange::Env {
            container: container.to_owned(),
            name: n.clone(),
            old: old.get(n).cloned(),
            new: new.get(n).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(env: Value, hash: &str) -> Value {
        json!({"metadata": {"annotations": {"a": "1"}}, "spec": {"template": {
            "metadata": {"annotations": {"h": hash}},
            "spec": {"containers": [{"name": "api", "env": env}, {"name": "side"}]}}}})
    }

    #[test]
    fn env_and_annotation_changes_are_listed_old_to_new() {
        let before = deployment(
            json!([{"name": "A", "value": "x"}, {"name": "B", "value": "b"}]),
            "h1",
        );
        let after = deployment(
            json!([{"name": "A", "value": "y"}, {"name": "C", "value": "c"}]),
            "h2",
        );
        let got = changes(&before, &after);
        let env = |name: &str, old: Option<&str>, new: Option<&str>| FieldChange::Env {
            container: "api".into(),
            name: name.into(),
            old: old.map(Into::into),
            new: new.map(Into::into),
        };
        assert_eq!(
            got,
            vec![
                FieldChange::Annotation {
                    key: "h".into(),
                    pod_template: true,
                    old: Some("h1".into()),
                    new: Some("h2".into())
                },
                env("A", Some("x"), Some("y")),
                env("B", Some("b"), None),
                env("C", None, Some("c")),
            ]
        );
        assert!(rolls(&before, &after));
    }

    #[test]
    fn the_same_object_has_no_changes_and_does_not_roll() {
        let d = deployment(
            json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]),
            "h",
        );
        assert!(changes(&d, &d).is_empty());
        assert!(!rolls(&d, &d));
    }

    #[test]
    fn a_value_from_is_shown_as_json() {
        let before = deployment(json!([{"name": "A", "valueFrom": {"k": 1}}]), "h");
        let after = deployment(json!([{"name": "A", "value": "v"}]), "h");
        assert_eq!(
            changes(&before, &after),
            vec![FieldChange::Env {
                container: "api".into(),
                name: "A".into(),
                old: Some("valueFrom {\"k\":1}".into()),
                new: Some("v".into())
            }]
        );
    }
}
