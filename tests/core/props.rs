//! Property tests: whatever the env lists and annotations look like, the patch applies cleanly,
//! every managed container ends with every managed variable set to our value, other entries are
//! untouched and in order, and a second pass yields no patch.

use std::collections::BTreeMap;

use carto_wi_webhook::admission::{self, Webhook};
use carto_wi_webhook::settings::Settings;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::common::*;

const EXTRA: &str = "WORKSPACE_SYNC_DATA_ENABLED";

fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(WORKFLOWS_TEMP.to_owned()),
        Just(BILLING_PROJECT.to_owned()),
        Just(SA_EMAIL.to_owned()),
        Just(OWNER_ID.to_owned()),
        Just(EXTRA.to_owned()),
        Just("REDIS_PASSWORD".to_owned()),
        Just("LOG_LEVEL".to_owned()),
        Just("A".to_owned()),
    ]
}

fn env_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!(TEMP_V))),
        Just(Some(json!(BILLING_V))),
        Just(Some(json!(EMAIL_V))),
        Just(Some(json!(OWNER_V))),
        Just(Some(json!("true"))),
        Just(Some(json!(""))),
        "[a-z~/ ]{0,6}".prop_map(|s| Some(json!(s))),
    ]
}

fn env_entry() -> impl Strategy<Value = Value> {
    (env_name(), env_value(), any::<bool>()).prop_map(|(name, value, value_from)| {
        let mut e = Map::new();
        e.insert("name".into(), json!(name));
        if let Some(v) = value {
            e.insert("value".into(), v);
        }
        if value_from {
            e.insert(
                "valueFrom".into(),
                json!({"secretKeyRef": {"name": "s", "key": "k"}}),
            );
        }
        Value::Object(e)
    })
}

/// `None` = no `env` key; `Some(Null)` = `env: null`; else a list.
fn env_field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => prop::collection::vec(env_entry(), 0..8).prop_map(|v| Some(Value::Array(v))),
    ]
}

fn annotation_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z~/.]{1,10}",
        Just(HASH.to_owned()),
        Just(GCP_SA.to_owned()),
        Just("a~1b".to_owned()),
        Just("~0/~1".to_owned()),
    ]
}

/// `None` = absent; `Some(None)` = null; `Some(Some(map))`.
fn annotations() -> impl Strategy<Value = Option<Option<BTreeMap<String, String>>>> {
    prop_oneof![
        Just(None),
        Just(Some(None)),
        prop::collection::btree_map(annotation_key(), "[a-z0-9~/]{0,12}", 0..5)
            .prop_map(|m| Some(Some(m))),
    ]
}

fn set_annotations(target: &mut Value, a: &Option<Option<BTreeMap<String, String>>>) {
    match a {
        None => {}
        Some(None) => target["annotations"] = Value::Null,
        Some(Some(m)) => target["annotations"] = json!(m),
    }
}

#[derive(Debug, Clone)]
struct Case {
    containers: Vec<Option<Value>>,
    inits: Vec<Option<Value>>,
    skip: Vec<bool>,
    template_annotations: Option<Option<BTreeMap<String, String>>>,
    template_meta_absent: bool,
    include_init: bool,
    extra_key: bool,
    object_opt_out: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(env_field(), 1..4),
        prop::collection::vec(env_field(), 0..3),
        prop::collection::vec(any::<bool>(), 7),
        annotations(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                containers,
                inits,
                skip,
                template_annotations,
                template_meta_absent,
                include_init,
                extra_key,
                object_opt_out,
            )| Case {
                containers,
                inits,
                skip,
                template_annotations,
                template_meta_absent,
                include_init,
                extra_key,
                object_opt_out,
            },
        )
}

fn build(c: &Case) -> (Value, Vec<String>) {
    let mk = |prefix: &str, envs: &[Option<Value>]| -> Vec<Value> {
        envs.iter()
            .enumerate()
            .map(|(i, e)| container(&format!("{prefix}{i}"), e.clone()))
            .collect()
    };
    let containers = mk("c", &c.containers);
    let inits = mk("i", &c.inits);
    let mut dep = deployment("prop", SA, containers);
    if !inits.is_empty() {
        dep["spec"]["template"]["spec"]["initContainers"] = json!(inits);
    }
    let names: Vec<String> = (0..c.containers.len())
        .map(|i| format!("c{i}"))
        .chain((0..c.inits.len()).map(|i| format!("i{i}")))
        .collect();
    let skipped: Vec<String> = names
        .iter()
        .zip(&c.skip)
        .filter(|(_, s)| **s)
        .map(|(n, _)| n.clone())
        .collect();
    if c.template_meta_absent {
        dep["spec"]["template"]
            .as_object_mut()
            .unwrap()
            .remove("metadata");
    } else {
        let meta = &mut dep["spec"]["template"]["metadata"];
        meta.as_object_mut().unwrap().remove("annotations");
        set_annotations(meta, &c.template_annotations);
    }
    if !skipped.is_empty() {
        dep["metadata"]["annotations"] = json!({SKIP: skipped.join(",")});
    }
    // Without --object-opt-out the list is ignored: every container is managed.
    let in_effect = if c.object_opt_out {
        skipped
    } else {
        Vec::new()
    };
    (dep, in_effect)
}

/// The settings of a case.
fn case_settings(c: &Case) -> Settings {
    Settings {
        include_init_containers: c.include_init,
        object_opt_out: c.object_opt_out,
        ..settings_allowing_extras()
    }
}

/// Does a managed container set the extra variable by `valueFrom` (kept by mutation, refused by
/// validation)?
fn extra_by_reference(dep: &Value, c: &Case, skipped: &[String]) -> bool {
    let pod = &dep["spec"]["template"]["spec"];
    let fields: &[&str] = if c.include_init {
        &["containers", "initContainers"]
    } else {
        &["containers"]
    };
    c.extra_key
        && fields
            .iter()
            .filter_map(|f| pod[*f].as_array())
            .flatten()
            .filter(|k| !skipped.iter().any(|s| k["name"] == s.as_str()))
            .filter_map(|k| k["env"].as_array())
            .flatten()
            .any(|e| e["name"] == EXTRA && e.get("valueFrom").is_some())
}

fn managed(c: &Case) -> Vec<(&'static str, &'static str)> {
    let mut m = acme_env();
    if c.extra_key {
        m.push((EXTRA, "true"));
    }
    m
}

fn check_container(before: &Value, after: &Value, managed: &[(&str, &str)], injected: bool) {
    if !injected {
        assert_eq!(before, after, "unmanaged container changed");
        return;
    }
    let before_env: Vec<Value> = before["env"].as_array().cloned().unwrap_or_default();
    let after_env = after["env"]
        .as_array()
        .expect("managed container has an env list");
    let is_managed = |e: &Value| managed.iter().any(|(k, _)| e["name"] == *k);
    // An extra variable set by a reference is never replaced.
    let kept = |e: &Value| e["name"] == EXTRA && e.get("valueFrom").is_some();
    // Every managed variable is present, and every other occurrence has exactly our value.
    for (k, v) in managed {
        let occ: Vec<&Value> = after_env.iter().filter(|e| e["name"] == *k).collect();
        assert!(!occ.is_empty(), "{k} missing");
        for e in occ.into_iter().filter(|e| !kept(e)) {
            assert_eq!(e["value"], json!(v), "{k}");
            assert!(
                e.get("valueFrom").is_none_or(Value::is_null),
                "{k} kept valueFrom"
            );
        }
    }
    // Entries that are not ours are untouched and keep their order; ours stay in place.
    assert!(after_env.len() >= before_env.len());
    for (i, b) in before_env.iter().enumerate() {
        if kept(b) {
            assert_eq!(&after_env[i], b, "a reference was replaced");
        } else if is_managed(b) {
            assert_eq!(after_env[i]["name"], b["name"], "managed entry moved");
        } else {
            assert_eq!(&after_env[i], b, "foreign entry changed");
        }
    }
    // Appended entries are only managed variables that were absent, once each.
    for e in &after_env[before_env.len()..] {
        assert!(is_managed(e), "appended a foreign entry {e}");
        assert!(
            !before_env.iter().any(|b| b["name"] == e["name"]),
            "appended a duplicate {e}"
        );
    }
    // Everything else about the container is unchanged.
    let strip = |c: &Value| {
        let mut c = c.clone();
        c.as_object_mut().unwrap().remove("env");
        c
    };
    assert_eq!(strip(before), strip(after));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn deployment_mutation_is_sound_and_idempotent(c in case()) {
        let (dep, skipped) = build(&c);
        let managed = managed(&c);
        let mut pairs = acme_env();
        if c.extra_key {
            pairs.push((EXTRA, "true"));
        }
        let cfg = config_of(&pairs);
        let snap = snapshot_of(cfg.clone());
        let s = case_settings(&c);
        // mutate_with applies the patch (panicking if it does not apply) and checks the second pass.
        let (out, d) = mutate_with(&dep, &snap, &s);
        prop_assert!(d.patch.is_some() || dep == out);
        for (field, envs, prefix) in [("containers", &c.containers, "c"), ("initContainers", &c.inits, "i")] {
            for i in 0..envs.len() {
                let name = format!("{prefix}{i}");
                let injected = !skipped.contains(&name) && (field == "containers" || c.include_init);
                check_container(
                    &dep["spec"]["template"]["spec"][field][i],
                    &out["spec"]["template"]["spec"][field][i],
                    &managed,
                    injected,
                );
            }
        }
        // The hash is stamped, and every other template annotation is kept as it was.
        let ann = out["spec"]["template"]["metadata"]["annotations"].as_object().expect("annotations");
        prop_assert_eq!(&ann[HASH], &json!(cfg.hash));
        // The extra variable is recorded as managed only when it is configured.
        let recorded = ann.get(MANAGED);
        if let Some(v) = recorded {
            prop_assert!(c.extra_key);
            prop_assert_eq!(v, &json!(EXTRA));
        }
        if let Some(Some(before)) = &c.template_annotations && !c.template_meta_absent {
            for (k, v) in before {
                if k != HASH {
                    prop_assert_eq!(&ann[k], &json!(v));
                }
            }
            let added = usize::from(!before.contains_key(HASH)) + usize::from(recorded.is_some());
            prop_assert_eq!(ann.len(), before.len() + added);
        }
        // Outside the pod template's env lists and annotations, nothing changed.
        let mut a = dep.clone();
        let mut b = out.clone();
        for o in [&mut a, &mut b] {
            let t = o["spec"]["template"].as_object_mut().unwrap();
            t.remove("metadata");
            for f in ["containers", "initContainers"] {
                if let Some(list) = t["spec"].get_mut(f).and_then(Value::as_array_mut) {
                    for ct in list {
                        ct.as_object_mut().unwrap().remove("env");
                    }
                }
            }
        }
        prop_assert_eq!(a, b);
    }

    #[test]
    fn service_account_mutation_is_sound_and_idempotent(a in annotations()) {
        let mut sa = service_account(SA, None);
        set_annotations(&mut sa["metadata"], &a);
        let (out, d) = mutate_default(&sa);
        let ann = out["metadata"]["annotations"].as_object().expect("annotations");
        prop_assert_eq!(&ann[GCP_SA], &json!(EMAIL_V));
        prop_assert_eq!(&ann[HASH], &json!(acme().hash));
        if let Some(Some(before)) = &a {
            for (k, v) in before {
                if k != HASH && k != GCP_SA {
                    prop_assert_eq!(&ann[k], &json!(v));
                }
            }
            let warned = d.warnings.iter().any(|w| w.contains(GCP_SA));
            let replaced = before.get(GCP_SA).is_some_and(|v| v != EMAIL_V);
            prop_assert_eq!(warned, replaced);
        }
        // Only metadata.annotations differ.
        let mut x = sa.clone();
        let mut y = out.clone();
        x["metadata"].as_object_mut().unwrap().remove("annotations");
        y["metadata"].as_object_mut().unwrap().remove("annotations");
        prop_assert_eq!(x, y);
    }

    #[test]
    fn validation_accepts_what_mutation_produces(c in case()) {
        let (dep, skipped) = build(&c);
        let mut pairs = acme_env();
        if c.extra_key {
            pairs.push((EXTRA, "true"));
        }
        let snap = snapshot_of(config_of(&pairs));
        let s = case_settings(&c);
        let (out, _) = mutate_with(&dep, &snap, &s);
        let v = admission::review(Webhook::Validate, &req(&out), &snap, &s);
        if extra_by_reference(&dep, &c, &skipped) {
            // What mutation leaves (a reference it never replaces), validation refuses, alone.
            prop_assert!(!v.allowed());
            prop_assert!(v.violations.iter().all(|x| x.to_string().contains("never replaces a reference")), "{:?}", v.violations);
        } else {
            prop_assert!(v.allowed(), "{:?}", v.denial.map(|d| d.to_string()));
            prop_assert!(v.violations.is_empty());
        }
    }
}
