//! The typed views against a full parse: the core on `view::ReviewRequest` (what the server and
//! `review` read) must give the same `Decision` as the pre-view core (tests/core/reference) on
//! kube-core's fully parsed `AdmissionRequest<DynamicObject>`, on every fixture object and on
//! random ones; `mutate_object`/`validate_object` agree with it too; malformed input is an error
//! (never a panic) from both parses.

use carto_wi_webhook::admission::view::{Field, Object, ReviewRequest};
use carto_wi_webhook::admission::{self, Decision, Kind, Webhook};
use carto_wi_webhook::config::{ConfigEntry, ConfigSnapshot, WorkloadIdentityConfig};
use carto_wi_webhook::settings::{Enforcement, Settings};
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::*;
use crate::reference;

/// Every Settings the decisions depend on, in several combinations.
fn all_settings() -> Vec<Settings> {
    let base = Settings::default();
    vec![
        base.clone(),
        Settings {
            include_init_containers: true,
            ..base.clone()
        },
        Settings {
            enforcement: Enforcement::Warn,
            include_init_containers: true,
            ..base.clone()
        },
        Settings {
            enforcement: Enforcement::Audit,
            ..base.clone()
        },
        Settings {
            deployments: vec!["carto-workspace-api".into(), "d0".into()],
            ..base.clone()
        },
        Settings {
            require_config: true,
            ..base.clone()
        },
        Settings {
            require_config: true,
            enforcement: Enforcement::Warn,
            ..base
        },
    ]
}

/// The acme default, no config, a broken default, and the acme default with `carto` opted out.
fn all_snapshots() -> Vec<ConfigSnapshot> {
    let broken =
        ConfigEntry::from_result(WorkloadIdentityConfig::from_data(&data(&[]), &allowed()));
    let mut opted = snapshot();
    opted.set_opted_out(NS, true);
    vec![
        snapshot(),
        ConfigSnapshot::default(),
        ConfigSnapshot::with_default(broken),
        opted,
    ]
}

/// The AdmissionReview `request` the API server would send for `obj` (UPDATE: with `old`).
fn body(operation: &str, obj: &Value, old: Option<&Value>, name: &str) -> Vec<u8> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("v1");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = obj["kind"].as_str().unwrap_or("Unknown");
    let resource = format!("{}s", kind.to_lowercase());
    serde_json::to_vec(&json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": name,
        "namespace": NS,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:helm", "uid": "u", "groups": ["system:authenticated"], "extra": {"a": ["b"]}},
        "object": obj,
        "oldObject": old,
        "dryRun": false,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"},
    }))
    .expect("serializes")
}

/// kube-core's derived parse of a whole request (every member of every object).
fn full_parse(body: &[u8]) -> serde_json::Result<AdmissionRequest<DynamicObject>> {
    serde_json::from_slice(body)
}

/// Both parses succeed, and every (webhook, snapshot, settings) gives the same decision.
fn same_decisions(body: &[u8], snapshots: &[ConfigSnapshot], settings: &[Settings]) {
    let full = full_parse(body).expect("full parse");
    let view = ReviewRequest::from_slice(body).expect("view parse");
    for snap in snapshots {
        for s in settings {
            for w in [Webhook::Mutate, Webhook::Validate] {
                let a: Decision = reference::review(w, &full, snap, s);
                let b = admission::review(w, &view, snap, s);
                assert_eq!(
                    a,
                    b,
                    "{} differs for {} with {s:?}",
                    w.as_str(),
                    String::from_utf8_lossy(body)
                );
                super::wire::assert_same_answer(&view.uid, &b);
            }
        }
    }
}

/// `mutate_object` / `validate_object` on the object alone decide as the reference does on the
/// CREATE of it in namespace `carto`.
fn same_object_decisions(obj: &Value, snapshots: &[ConfigSnapshot], settings: &[Settings]) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let full = full_parse(&body("CREATE", obj, None, name)).expect("full parse");
    let view = Object::from_value(obj).expect("view parse");
    for snap in snapshots {
        for s in settings {
            let m = admission::mutate_object(view.kind(), &view, NS, snap, s);
            assert_eq!(
                m,
                reference::review(Webhook::Mutate, &full, snap, s),
                "{obj}"
            );
            let v = admission::validate_object(view.kind(), &view, NS, snap, s);
            assert_eq!(
                v,
                reference::review(Webhook::Validate, &full, snap, s),
                "{obj}"
            );
        }
    }
}

/// What the API server adds to every object: `managedFields`, `status`, uid, resourceVersion.
fn as_served(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("uid".into(), json!("0b0b0b0b-1111-2222-3333-444444444444"));
        m.insert("resourceVersion".into(), json!("12345"));
        m.insert(
            "managedFields".into(),
            json!([{"manager": "helm", "operation": "Update", "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}},
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}}}}}}}}]),
        );
    }
    o.as_object_mut().expect("an object").insert(
        "status".into(),
        json!({"observedGeneration": 3, "conditions": [{"type": "Available"}]}),
    );
    o
}

#[test]
fn same_decisions_on_every_fixture_object() {
    let (snaps, settings) = (all_snapshots(), all_settings());
    let mut n = 0;
    for file in [
        "carto-plain.yaml",
        "carto-manual-wi.yaml",
        "edge-deployments.yaml",
        "configmap-valid.yaml",
        "configmap-invalid.yaml",
    ] {
        for obj in fixture_objects(file) {
            if !obj.is_object() {
                continue;
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            for o in [obj.clone(), as_served(&obj)] {
                same_decisions(&body("CREATE", &o, None, &name), &snaps, &settings);
                same_decisions(&body("UPDATE", &o, Some(&obj), &name), &snaps, &settings);
                // generateName objects: no name in the request.
                same_decisions(&body("CREATE", &o, None, ""), &snaps, &settings);
                same_object_decisions(&o, &snaps, &settings);
            }
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

    /// Random Deployments, ServiceAccounts and ConfigMaps: the same decisions from both parses.
    #[test]
    fn same_decisions_on_random_objects(
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
        same_decisions(&b, &all_snapshots(), &all_settings());
    }
}

/// A ConfigMap read through the view gives the same configuration or problems (same messages,
/// same order) as the pre-view reading of the JSON value, also with repeated keys, non-string
/// values, `binaryData` and another kind.
#[test]
fn config_from_the_view_matches_the_json_reading() {
    let data = format!(
        r#"{{"{WORKFLOWS_TEMP}":"{TEMP_V}","{BILLING_PROJECT}":5,"{SA_EMAIL}":"bad value","{WORKFLOWS_TEMP}":"x","TYPO_KEY":null}}"#
    );
    let texts = [
        format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c"}},"data":{data}}}"#),
        format!(r#"{{"kind":"ConfigMap","data":{data},"binaryData":{{"b":"eA==","a":"","b":""}}}}"#),
        format!(r#"{{"kind":"Secret","data":{data}}}"#),
        r#"{"kind":"ConfigMap","data":["x"],"binaryData":null}"#.to_owned(),
        r#"{"kind":"ConfigMap","data":null}"#.to_owned(),
        r#"{"kind":5,"data":{}}"#.to_owned(),
        r#"{"data":{"WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL":"carto-wi@acme-analytics.iam.gserviceaccount.com"}}"#.to_owned(),
    ];
    for text in texts
        .iter()
        .map(String::as_bytes)
        .chain([fixture("configmap-valid.yaml").as_bytes()])
    {
        let value: Value = match serde_json::from_slice(text) {
            Ok(v) => v,
            Err(_) => carto_wi_webhook::yaml::parse(std::str::from_utf8(text).unwrap()).unwrap(),
        };
        let expected = reference::config::config_from_object(&value, &allowed());
        let view = Object::from_value(&value).expect("an object");
        assert_eq!(
            view.config_map_shape(view.kind.str()).config(&allowed()),
            expected,
            "{value}"
        );
        // Parsed from the text too (the JSON ones), borrowing from it.
        if let Ok(o) = Object::from_slice(text) {
            assert_eq!(
                o.config_map_shape(o.kind.str()).config(&allowed()),
                expected
            );
        }
        assert_eq!(
            carto_wi_webhook::config::config_from_object(&value, &allowed()),
            expected
        );
    }
}

/// The reference core gives the golden decisions too (what the golden files were made from).
#[test]
fn the_reference_core_gives_the_golden_decisions() {
    let reference_decide = |w: Webhook, b: &[u8], snap: &ConfigSnapshot, s: &Settings| {
        reference::review(w, &full_parse(b).expect("full parse"), snap, s)
    };
    for case in super::golden::cases() {
        assert_eq!(
            super::golden::golden(&case, &reference_decide),
            super::golden::golden(&case, &super::golden::decide),
            "{}",
            case.title
        );
    }
}

/// The reference reading of ConfigMaps gives the golden readings too.
#[test]
fn the_reference_config_reading_is_golden() {
    let reference_read = |v: &Value| reference::config::config_from_object(v, &allowed());
    let read = |v: &Value| carto_wi_webhook::config::config_from_object(v, &allowed());
    assert_eq!(
        super::golden::config_golden(&reference_read),
        super::golden::config_golden(&read)
    );
}
