//! Inputs shared by the benchmarks (criterion benches, the memory bench and the load generator):
//! realistic AdmissionReview bodies built from the CARTO chart fixture, synthetic Deployments and
//! snapshots holding many namespace ConfigMaps.
//!
//! Included with `#[path]` from `bench/loadbench.rs` too, so not every item is used everywhere.
#![allow(dead_code)]

use carto_wi_webhook::admission::view::{self, ReviewRequest};
use carto_wi_webhook::admission::wire::response_body;
use carto_wi_webhook::admission::{Decision, Webhook};
use carto_wi_webhook::config::{ConfigEntry, ConfigSnapshot, WorkloadIdentityConfig};
use carto_wi_webhook::settings::Settings;
use carto_wi_webhook::yaml;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The CARTO plain install (helm output), as committed in tests/fixtures.
pub const CARTO_PLAIN: &str = include_str!("../../tests/fixtures/carto-plain.yaml");
/// The valid Workload Identity ConfigMap, as committed in tests/fixtures.
pub const CONFIGMAP_VALID: &str = include_str!("../../tests/fixtures/configmap-valid.yaml");

/// One object of the CARTO fixture, by kind and name.
pub fn carto_object(kind: &str, name: &str) -> Value {
    yaml::split_documents(CARTO_PLAIN)
        .into_iter()
        .filter(|d| !d.is_empty())
        .filter_map(|d| yaml::parse(d.text).ok())
        .find(|v| {
            v["kind"] == kind && v.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .unwrap_or_else(|| panic!("{kind} {name} is not in carto-plain.yaml"))
}

/// The `carto-workspace-api` Deployment: runs as `carto-common-backend`, one container with two
/// `valueFrom` env vars, and an init container.
pub fn workspace_api() -> Value {
    carto_object("Deployment", "carto-workspace-api")
}

/// The `carto-common-backend` ServiceAccount.
pub fn common_backend_sa() -> Value {
    carto_object("ServiceAccount", "carto-common-backend")
}

/// The valid configuration ConfigMap object.
pub fn configmap_valid() -> Value {
    yaml::parse(CONFIGMAP_VALID).expect("configmap-valid.yaml parses")
}

/// The data of the valid ConfigMap.
pub fn config_data() -> BTreeMap<String, String> {
    carto_wi_webhook::config::config_map_data(&configmap_valid()).expect("valid data")
}

/// The configuration of the valid ConfigMap, as a snapshot entry.
pub fn config_entry() -> ConfigEntry {
    ConfigEntry::from_result(WorkloadIdentityConfig::from_data(
        &config_data(),
        &Default::default(),
    ))
}

/// A snapshot with the fixture config as the cluster default and `n` namespace ConfigMaps
/// (`ns-0` .. `ns-{n-1}`), each parsed from its own data (distinct owner ids, so distinct hashes).
pub fn snapshot_with_namespaces(n: usize) -> ConfigSnapshot {
    let mut snap = ConfigSnapshot::with_default(config_entry());
    let base = config_data();
    for i in 0..n {
        let mut data = base.clone();
        data.insert(
            "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID".into(),
            format!("auth0|bench-owner-{i:06}"),
        );
        let entry = ConfigEntry::from_result(WorkloadIdentityConfig::from_data(
            &data,
            &Default::default(),
        ));
        assert!(matches!(entry, ConfigEntry::Valid(_)));
        snap.set_namespace(format!("ns-{i}"), entry);
    }
    snap
}

/// A copy of `obj` placed in namespace `ns`.
pub fn in_namespace(obj: &Value, ns: &str) -> Value {
    let mut o = obj.clone();
    o["metadata"]["namespace"] = json!(ns);
    o
}

/// A Deployment running as `carto-common-backend` with `containers` containers of `envs` literal
/// env vars each.
pub fn synthetic_deployment(containers: usize, envs: usize) -> Value {
    let containers: Vec<Value> = (0..containers)
        .map(|c| {
            let env: Vec<Value> = (0..envs)
                .map(|e| json!({"name": format!("APP_SETTING_{e:03}"), "value": format!("value-{c}-{e}")}))
                .collect();
            json!({
                "name": format!("app-{c}"),
                "image": "us-docker.pkg.dev/carto-onprem-artifacts/gcr.io/workspace-api:2026.8.11",
                "env": env,
            })
        })
        .collect();
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": format!("synthetic-{}", containers.len()), "namespace": "carto",
                     "labels": {"app.kubernetes.io/name": "synthetic"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "synthetic"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "synthetic"}},
                "spec": {"serviceAccountName": "carto-common-backend", "containers": containers},
            },
        },
    })
}

/// The AdmissionReview body the API server sends for `operation` of `obj` (JSON, as on the wire).
pub fn review_body(obj: &Value, operation: &str) -> Vec<u8> {
    let old = if operation == "UPDATE" {
        obj.clone()
    } else {
        Value::Null
    };
    review_body_with_old(obj, &old, operation)
}

/// The same with `oldObject` given (`null` for CREATE).
pub fn review_body_with_old(obj: &Value, old: &Value, operation: &str) -> Vec<u8> {
    let api_version = obj["apiVersion"].as_str().expect("apiVersion");
    let kind = obj["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_ascii_lowercase());
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {
                "username": "system:serviceaccount:kube-system:helm",
                "uid": "014fbff9-a07c-4e8b-9a2e-1d6f4c0a5e11",
                "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
            },
            "object": obj,
            "oldObject": old,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "helm"},
        },
    });
    serde_json::to_vec(&review).expect("serializes")
}

/// The AdmissionReview envelope as the server reads it (`src/server/router.rs`): `apiVersion`,
/// `kind` and `request`, the request being the core's borrowing view.
#[derive(serde::Deserialize)]
pub struct Envelope<'a> {
    #[serde(
        rename = "apiVersion",
        borrow,
        default,
        deserialize_with = "view::opt_cow"
    )]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "view::opt_cow")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub request: Option<ReviewRequest<'a>>,
}

/// The same envelope with kube-core's derived `AdmissionRequest<DynamicObject>` (serde buffers
/// each object for `DynamicObject`'s flattened fields): the server's parse before the fix.
#[derive(serde::Deserialize)]
pub struct DerivedEnvelope {
    #[serde(rename = "apiVersion", default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub request: Option<AdmissionRequest<DynamicObject>>,
}

/// Parse an AdmissionReview body into the request the core takes (the server's way).
pub fn parse_request(body: &[u8]) -> ReviewRequest<'_> {
    let env: Envelope<'_> = view::from_json(body).expect("an AdmissionReview");
    env.request.expect("a request")
}

/// The same with the derived implementation (before the fix).
pub fn parse_request_derived(body: &[u8]) -> AdmissionRequest<DynamicObject> {
    let env: DerivedEnvelope = serde_json::from_slice(body).expect("an AdmissionReview");
    env.request.expect("a request")
}

/// The same with kube-core's `AdmissionReview` (its flattened `TypeMeta` buffers the whole body
/// once more).
pub fn parse_request_kube_review(body: &[u8]) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).expect("an AdmissionReview");
    review.try_into().expect("a request")
}

/// The whole request path minus HTTP, as the server runs it: parse the body, decide, write the
/// response body.
pub fn handle(
    webhook: Webhook,
    body: &[u8],
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Vec<u8> {
    let (status, answer) =
        carto_wi_webhook::server::router::answer_body(webhook, body, snapshot, settings);
    assert_eq!(status, 200, "a review is decided");
    answer
}

/// `obj` after the mutating webhook's patch (what the validating webhook then sees).
pub fn mutated(obj: &Value, snapshot: &ConfigSnapshot, settings: &Settings) -> Value {
    let body = review_body(obj, "CREATE");
    let req = parse_request(&body);
    let d: Decision =
        carto_wi_webhook::admission::review(Webhook::Mutate, &req, snapshot, settings);
    let mut out = obj.clone();
    if let Some(p) = &d.patch {
        json_patch::patch(&mut out, p).expect("the patch applies");
    }
    out
}

/// `fieldsV1` of a managed-fields entry owning every member of `v` (`f:` for object members,
/// `k:{"name":…}` for named list elements, as the API server writes them).
fn fields_v1(v: &Value) -> Value {
    let mut out = serde_json::Map::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                out.insert(format!("f:{k}"), fields_v1(v));
            }
        }
        Value::Array(items) => {
            for item in items {
                let Some(name) = item.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let mut f = fields_v1(item);
                f[".".to_string()] = json!({});
                out.insert(format!("k:{}", json!({ "name": name })), f);
            }
        }
        _ => {}
    }
    Value::Object(out)
}

/// A Deployment as the API server stores and sends it: defaults filled in, uid, resourceVersion,
/// generation, `managedFields` (helm for the spec, the controller for the status) and `status`.
pub fn deployment_as_served(obj: &Value, generation: u64) -> Value {
    let mut d = obj.clone();
    let spec_fields =
        fields_v1(&json!({"metadata": {"labels": d["metadata"]["labels"]}, "spec": d["spec"]}));
    let pod = &mut d["spec"]["template"]["spec"];
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        pod[k] = v;
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = pod[list].as_array_mut() {
            for c in cs {
                c["terminationMessagePath"] = json!("/dev/termination-log");
                c["terminationMessagePolicy"] = json!("File");
                c["resources"] = json!({});
            }
        }
    }
    d["spec"]["revisionHistoryLimit"] = json!(10);
    d["spec"]["progressDeadlineSeconds"] = json!(600);
    d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": "25%", "maxSurge": "25%"});
    let meta = &mut d["metadata"];
    meta["uid"] = json!("3b6c2d1e-8f4a-4c55-9e2b-0d7f1a6c9e42");
    meta["resourceVersion"] = json!(format!("{}", 184_467 + generation));
    meta["generation"] = json!(generation);
    meta["creationTimestamp"] = json!("2026-08-11T09:14:03Z");
    meta["annotations"] = json!({"deployment.kubernetes.io/revision": generation.to_string(),
                                  "meta.helm.sh/release-name": "carto",
                                  "meta.helm.sh/release-namespace": "carto"});
    meta["managedFields"] = json!([
        {"manager": "helm", "operation": "Update", "apiVersion": "apps/v1",
         "time": "2026-11-20T16:02:41Z", "fieldsType": "FieldsV1", "fieldsV1": spec_fields},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
         "time": "2026-11-20T16:03:12Z", "fieldsType": "FieldsV1", "subresource": "status",
         "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
                      "f:status": {"f:availableReplicas": {}, "f:conditions": {".": {},
                          "k:{\"type\":\"Available\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
                          "k:{\"type\":\"Progressing\"}": {".": {}, "f:lastTransitionTime": {}, "f:lastUpdateTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                      "f:observedGeneration": {}, "f:readyReplicas": {}, "f:replicas": {}, "f:updatedReplicas": {}}}},
    ]);
    d["status"] = json!({
        "observedGeneration": generation, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
        "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": "2026-11-20T16:03:12Z",
             "lastTransitionTime": "2026-08-11T09:15:40Z", "reason": "MinimumReplicasAvailable",
             "message": "Deployment has minimum availability."},
            {"type": "Progressing", "status": "True", "lastUpdateTime": "2026-11-20T16:03:12Z",
             "lastTransitionTime": "2026-08-11T09:14:03Z", "reason": "NewReplicaSetAvailable",
             "message": "ReplicaSet \"carto-workspace-api-7d9f8c6b5d\" has successfully progressed."},
        ],
    });
    d
}

/// The UPDATE review of a `helm upgrade` of workspace-api (a new image): the new object and the
/// stored one (admitted earlier, so already patched) as the API server sends them.
pub fn workspace_api_update_body(snapshot: &ConfigSnapshot, settings: &Settings) -> Vec<u8> {
    let old = deployment_as_served(&mutated(&workspace_api(), snapshot, settings), 3);
    let mut new = workspace_api();
    for list in ["containers", "initContainers"] {
        for c in new["spec"]["template"]["spec"][list]
            .as_array_mut()
            .expect("a list")
        {
            let image = c["image"]
                .as_str()
                .expect("an image")
                .replace("2026.8.11-rc.7", "2026.11.2");
            c["image"] = json!(image);
        }
    }
    review_body_with_old(&deployment_as_served(&new, 4), &old, "UPDATE")
}

/// The ways of reading the same envelope and views that the `decode/*` benchmarks compare.
#[derive(Clone, Copy, Debug)]
pub enum Parser {
    /// The server's: the body checked as UTF-8 whole, then `serde_json::from_str`.
    SerdeJson,
    /// `serde_json::from_slice` (checks UTF-8 string by string).
    SerdeJsonSlice,
}

impl Parser {
    pub const ALL: [Parser; 2] = [Parser::SerdeJson, Parser::SerdeJsonSlice];

    pub fn name(self) -> &'static str {
        match self {
            Parser::SerdeJson => "serde_json",
            Parser::SerdeJsonSlice => "serde_json_slice",
        }
    }
}

/// Parse `body` with `parser` and hand the request to `f`.
pub fn with_request<R>(parser: Parser, body: &[u8], f: impl FnOnce(&ReviewRequest<'_>) -> R) -> R {
    match parser {
        Parser::SerdeJson => f(&parse_request(body)),
        Parser::SerdeJsonSlice => {
            let env: Envelope<'_> = serde_json::from_slice(body).expect("an AdmissionReview");
            f(&env.request.expect("a request"))
        }
    }
}

/// [`handle`] with another parser.
pub fn handle_with(
    parser: Parser,
    webhook: Webhook,
    body: &[u8],
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Vec<u8> {
    with_request(parser, body, |req| {
        let decision = carto_wi_webhook::admission::review(webhook, req, snapshot, settings);
        response_body(&req.uid, &decision)
    })
}
