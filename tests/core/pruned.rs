//! The typed views against kube-core's full parse: both parses accept or refuse the same input
//! (malformed input is an error, never a panic), `mutate_object`/`validate_object` agree with
//! `review` on the same object, and the answer bytes are serde_json's, on every fixture object
//! and on random ones. What the core decides is pinned by the golden files (tests/core/golden.rs).

use carto_wi_webhook::admission::view::{Field, Object, ReviewRequest};
use carto_wi_webhook::admission::{self, Kind, Webhook};
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::Settings;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::*;
use crate::golden::{
    all_settings, all_snapshots, as_served, body, cases, config_texts, config_value,
};

/// kube-core's derived parse of a whole request (every member of every object).
fn full_parse(body: &[u8]) -> serde_json::Result<AdmissionRequest<DynamicObject>> {
    serde_json::from_slice(body)
}

/// Both parses succeed, and every (webhook, snapshot, settings) answer is written as serde_json
/// writes it.
fn both_parse(body: &[u8], snapshots: &[(&str, ConfigSnapshot)], settings: &[(&str, Settings)]) {
    full_parse(body).expect("full parse");
    let view = ReviewRequest::from_slice(body).expect("view parse");
    for (_, snap) in snapshots {
        for (_, s) in settings {
            for w in [Webhook::Mutate, Webhook::Validate] {
                super::wire::assert_same_answer(&view.uid, &admission::review(w, &view, snap, s));
            }
        }
    }
}

/// `mutate_object` / `validate_object` on the object alone decide as `review` does on the
/// CREATE of it in namespace `carto`.
fn same_object_decisions(
    obj: &Value,
    snapshots: &[(&str, ConfigSnapshot)],
    settings: &[(&str, Settings)],
) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let create = body("CREATE", obj, None, name);
    let req = ReviewRequest::from_slice(&create).expect("view parse");
    let view = Object::from_value(obj).expect("view parse");
    for (_, snap) in snapshots {
        for (_, s) in settings {
            let m = admission::mutate_object(view.kind(), &view, NS, snap, s);
            assert_eq!(
                m,
                admission::review(Webhook::Mutate, &req, snap, s),
                "{obj}"
            );
            let v = admission::validate_object(view.kind(), &view, NS, snap, s);
            assert_eq!(
                v,
                admission::review(Webhook::Validate, &req, snap, s),
                "{obj}"
            );
        }
    }
}

#[test]
fn fixture_objects_parse_alike_and_decide_alike_alone() {
    let (snaps, settings) = (all_snapshots(), all_settings());
    let mut n = 0;
    for case in cases() {
        for (_, b) in &case.requests {
            both_parse(b, &snaps, &settings);
        }
        if let Some(obj) = &case.object {
            same_object_decisions(obj, &snaps, &settings);
            same_object_decisions(&as_served(obj), &snaps, &settings);
            n += 1;
        }
    }
    assert!(n > 30, "only {n} fixture objects");
}

/// The view keeps every container and env entry in its place (patch paths use the indices) and
/// tells an absent member from `null` and from one of another type.
#[test]
fn view_keeps_what_the_core_reads() {
    let obj = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "", "labels": {"l": "v"}, "managedFields": [{"x": 1}]},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "serviceAccount": "carto-common-backend",
            "volumes": [{"name": "v"}],
            "containers": [{"name": "a", "image": "i", "env": null}, "junk", {"image": "j"},
                           {"name": "c", "env": [null, {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                                                 {"name": "Y", "value": null}, {"name": "Z", "value": 3}]},
                           {"name": "e", "env": "not a list"}],
            "initContainers": 7}}},
        "status": {"replicas": 2}
    });
    let o = Object::from_value(&obj).unwrap();
    assert_eq!(o.kind(), Kind::Deployment);
    assert_eq!((o.name(), o.namespace()), ("d", None));
    assert_eq!(o.metadata.labels.as_ref().unwrap().get("l"), Some("v"));
    assert!(o.metadata.annotations.is_none() && !o.is_deleting());
    let meta = o.template_meta().expect("template metadata");
    assert_eq!(meta.annotations, Field::Absent);
    let pod = o.pod_spec().expect("a pod spec");
    assert_eq!(pod.service_account.str(), Some(SA));
    assert_eq!(pod.service_account_name, Field::Absent);
    assert_eq!(pod.init_containers, Field::Wrong);
    let c = pod.list("containers");
    assert_eq!(c.len(), 5);
    assert_eq!(c[0].get().unwrap().env, Field::Null);
    assert_eq!(c[1], Field::Wrong);
    assert_eq!(c[2].get().unwrap().name, Field::Absent);
    assert_eq!(c[2].get().unwrap().env, Field::Absent);
    assert_eq!(c[4].get().unwrap().env, Field::Wrong);
    let env = c[3].get().unwrap().env.get().unwrap();
    assert_eq!(env.len(), 4);
    assert_eq!(env[0], Field::Null);
    let x = env[1].get().unwrap();
    assert!(x.value_from.is_set() && !x.value.is_present());
    let y = env[2].get().unwrap();
    assert!(y.value.is_present() && y.value.str().is_none() && !y.value_from.is_set());
    assert_eq!(env[3].get().unwrap().value, Field::Wrong);
    // Strings without escapes are borrowed from the input, not copied.
    let text = serde_json::to_vec(&obj).unwrap();
    let o = Object::from_slice(&text).unwrap();
    assert!(matches!(
        o.metadata.name,
        Some(std::borrow::Cow::Borrowed("d"))
    ));
}

/// Malformed input: an error from both parses (the same verdict), never a panic.
#[test]
fn malformed_input_is_an_error_from_both() {
    let ok = body(
        "CREATE",
        &deployment("d", SA, vec![container("a", None)]),
        None,
        "d",
    );
    let text = String::from_utf8(ok.clone()).unwrap();
    let mut bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{".to_vec(),
        b"{\"uid\":\"1\"}".to_vec(),
        ok[..ok.len() / 2].to_vec(),
        ok[..ok.len() - 1].to_vec(),
        text.replace("\"CREATE\"", "\"PATCH\"").into_bytes(),
        text.replace("\"userInfo\"", "\"userInfoX\"").into_bytes(),
        text.replace("\"uid\":\"705ab4f5", "\"uid\":5,\"x\":\"")
            .into_bytes(),
        text.replace("\"object\":{", "\"object\":[{").into_bytes(),
        text.replace("\"object\":{", "\"object\":3,\"y\":{")
            .into_bytes(),
        text.replace("\"metadata\":{", "\"metadata\":null,\"m\":{")
            .into_bytes(),
        text.replace("\"metadata\":{", "\"metadata\":{},\"metadata\":{")
            .into_bytes(),
        text.replace("\"name\":\"d\",\"namespace\"", "\"name\":5,\"namespace\"")
            .into_bytes(),
        text.replace("\"metadata\":{", "\"metadata\":{\"labels\":{\"a\":1},")
            .into_bytes(),
        text.replace("\"metadata\":{", "\"metadata\":{\"annotations\":[],")
            .into_bytes(),
        text.replace(
            "\"metadata\":{",
            "\"metadata\":{\"deletionTimestamp\":\"yesterday\",",
        )
        .into_bytes(),
        text.replace("\"containers\":[", "\"containers\":[,")
            .into_bytes(),
        text.replace("\"replicas\":1", "\"replicas\":1,,")
            .into_bytes(),
        text.replace("\"dryRun\":false", "\"dryRun\":\"no\"")
            .into_bytes(),
        [&ok[..], b" x"].concat(),
    ];
    bad.push(
        text.replace("\"oldObject\":null", "\"oldObject\":{\"a\":")
            .into_bytes(),
    );
    for b in &bad {
        let full = full_parse(b);
        let view = ReviewRequest::from_slice(b);
        assert!(
            full.is_err() && view.is_err(),
            "{}: full {:?}, view {:?}",
            String::from_utf8_lossy(b),
            full.map(|_| ()),
            view.map(|_| ())
        );
    }
    // The well-formed one is fine with both.
    assert!(full_parse(&ok).is_ok());
    assert!(ReviewRequest::from_slice(&ok).is_ok());
}

fn env_entry() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        WORKFLOWS_TEMP,
        BILLING_PROJECT,
        SA_EMAIL,
        OWNER_ID,
        GKE_PROJECT,
        "OTHER",
    ]);
    prop_oneof![
        (
            names.clone(),
            prop::sample::select(vec![TEMP_V, BILLING_V, EMAIL_V, OWNER_V, "x", ""])
        )
            .prop_map(|(n, v)| json!({"name": n, "value": v})),
        names.clone().prop_map(
            |n| json!({"name": n, "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}})
        ),
        names.prop_map(|n| json!({"name": n})),
        Just(Value::Null),
        Just(json!("junk")),
    ]
}

fn env() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!("not a list"))),
        prop::collection::vec(env_entry(), 0..7).prop_map(|v| Some(Value::Array(v))),
    ]
}

/// Random extra members (images, ports, resources...) the view must skip.
fn extra() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(null)),
        Just(
            json!({"image": "x:1", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}}})
        ),
        Just(json!({"args": ["a", 1, 2.5, true, null], "env2": [{"name": "X"}]})),
    ]
}

fn container_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (prop::option::of(prop::sample::select(vec!["a", "b", "api", ""])), env(), extra()).prop_map(
            |(name, env, extra)| {
                let mut c = extra.as_object().cloned().unwrap_or_default();
                if let Some(n) = name {
                    c.insert("name".into(), json!(n));
                }
                if let Some(e) = env {
                    c.insert("env".into(), e);
                }
                Value::Object(c)
            }
        ),
        1 => Just(json!("not a container")),
        1 => Just(Value::Null),
    ]
}

fn containers() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => prop::collection::vec(container_value(), 0..4).prop_map(|v| Some(Value::Array(v))),
    ]
}

fn string_map() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!({}))),
        Just(Some(json!({SKIP: "a, b,zz"}))),
        Just(Some(json!({SKIP: "api", HASH: "old", GCP_SA: EMAIL_V}))),
        Just(Some(json!({GCP_SA: "bogus", INJECT: "false"}))),
        Just(Some(
            json!({GCP_SA: "other@p.iam.gserviceaccount.com", "x": "y"})
        )),
        Just(Some(json!({INJECT: "FALSE"}))),
    ]
}

fn template_meta() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        Just(Some(json!("odd"))),
        (string_map(), extra()).prop_map(|(a, extra)| {
            let mut m = serde_json::Map::new();
            m.insert("labels".into(), json!({"app": "x"}));
            m.insert("extra".into(), extra);
            if let Some(a) = a {
                m.insert("annotations".into(), a);
            }
            Some(Value::Object(m))
        }),
    ]
}

fn metadata() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["d0", "carto-workspace-api", SA, "carto-workload-identity", "other"]),
        string_map(),
        string_map(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, labels, annotations, managed, deleting)| {
            let mut m = json!({"name": name, "namespace": NS, "uid": "x", "ownerReferences": [{"kind": "K"}]});
            if let Some(l) = labels {
                m["labels"] = l;
            }
            if let Some(a) = annotations {
                m["annotations"] = a;
            }
            if managed {
                m["managedFields"] = json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "time": "2024-01-01T00:00:00Z"}]);
            }
            if deleting {
                m["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            }
            m
        })
}

fn pod_spec() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(vec![SA, "", "other"])),
        prop::option::of(prop::sample::select(vec![SA, "", "other"])),
        containers(),
        containers(),
        extra(),
    )
        .prop_map(|(san, sa, c, ic, extra)| {
            let mut p = serde_json::Map::new();
            p.insert("volumes".into(), extra);
            if let Some(v) = san {
                p.insert("serviceAccountName".into(), json!(v));
            }
            if let Some(v) = sa {
                p.insert("serviceAccount".into(), json!(v));
            }
            if let Some(v) = c {
                p.insert("containers".into(), v);
            }
            if let Some(v) = ic {
                p.insert("initContainers".into(), v);
            }
            Value::Object(p)
        })
}

fn deployment_value() -> impl Strategy<Value = Value> {
    (metadata(), template_meta(), pod_spec(), extra()).prop_map(|(meta, tm, pod, extra)| {
        let mut template = json!({"spec": pod});
        if let Some(m) = tm {
            template["metadata"] = m;
        }
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
               "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": template, "strategy": extra},
               "status": {"replicas": 1}})
    })
}

fn service_account_value() -> impl Strategy<Value = Value> {
    (metadata(), extra()).prop_map(|(meta, extra)| {
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta,
               "secrets": [{"name": "s"}], "automountServiceAccountToken": extra})
    })
}

fn config_map_value() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        prop::sample::select(vec![TEMP_V, BILLING_V, EMAIL_V, OWNER_V, "bad value", ""])
            .prop_map(|v| json!(v)),
        Just(json!(5)),
        Just(Value::Null),
    ];
    let key = prop::sample::select(vec![
        WORKFLOWS_TEMP,
        BILLING_PROJECT,
        SA_EMAIL,
        OWNER_ID,
        GKE_PROJECT,
        "TYPO_KEY",
    ]);
    (
        metadata(),
        prop::collection::btree_map(key, value, 0..7),
        prop_oneof![Just(None), Just(Some(json!({"b": "eA=="}))), Just(Some(Value::Null))],
        any::<bool>(),
    )
        .prop_map(|(meta, d, binary, data_is_list)| {
            let mut o = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "immutable": false});
            o["data"] = if data_is_list { json!(["x"]) } else { json!(d) };
            if let Some(b) = binary {
                o["binaryData"] = b;
            }
            o
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Random Deployments, ServiceAccounts and ConfigMaps: both parses accept them, and the
    /// object alone decides as its CREATE does.
    #[test]
    fn random_objects_parse_alike_and_decide_alike_alone(
        obj in prop_oneof![
            4 => deployment_value(),
            1 => service_account_value(),
            1 => config_map_value(),
        ],
        update in any::<bool>(),
        named in any::<bool>(),
    ) {
        let name = if named { obj["metadata"]["name"].as_str().unwrap_or("").to_owned() } else { String::new() };
        let b = if update {
            body("UPDATE", &obj, Some(&obj), &name)
        } else {
            body("CREATE", &obj, None, &name)
        };
        let (snaps, settings) = (all_snapshots(), all_settings());
        both_parse(&b, &snaps, &settings);
        same_object_decisions(&obj, &snaps, &settings);
    }
}

/// A ConfigMap read through the view (from the JSON value, and from the text, borrowing from
/// it) gives the same configuration or problems as `config_from_object`; what that is, is
/// pinned in tests/core/golden/configmap-readings.json.
#[test]
fn config_from_the_view_matches_the_json_reading() {
    for text in config_texts() {
        let value = config_value(&text);
        let expected = carto_wi_webhook::config::config_from_object(&value, &allowed());
        let view = Object::from_value(&value).expect("an object");
        assert_eq!(
            view.config_map_shape(view.kind.str()).config(&allowed()),
            expected,
            "{value}"
        );
        if let Ok(o) = Object::from_slice(text.as_bytes()) {
            assert_eq!(
                o.config_map_shape(o.kind.str()).config(&allowed()),
                expected
            );
        }
    }
}
