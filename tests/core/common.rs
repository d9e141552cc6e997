//! Shared helpers: the acme configuration, request builders, and patch application with the
//! idempotence check every mutation test relies on.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use carto_wi_webhook::admission::view::ReviewRequest;
use carto_wi_webhook::admission::{self, Decision, Webhook};
use carto_wi_webhook::config::{
    ConfigEntry, ConfigSnapshot, ExtraEnvAllowlist, WorkloadIdentityConfig,
};
use carto_wi_webhook::settings::Settings;
use json_patch::Patch;
use serde::Deserialize;
use serde_json::{Value, json};

pub const NS: &str = "carto";
pub const SA: &str = "carto-common-backend";

pub const WORKFLOWS_TEMP: &str = "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP";
pub const BILLING_PROJECT: &str = "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT";
pub const SA_EMAIL: &str = "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL";
pub const OWNER_ID: &str = "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID";
pub const GKE_PROJECT: &str = "GKE_CLUSTER_PROJECT";

pub const TEMP_V: &str = "acme-analytics.carto_workflows_temp";
pub const BILLING_V: &str = "acme-gke-prod";
pub const EMAIL_V: &str = "carto-wi@acme-analytics.iam.gserviceaccount.com";
pub const OWNER_V: &str = "auth0|3idsj230990sj4wsddd10";

pub const GCP_SA: &str = "iam.gke.io/gcp-service-account";
pub const HASH: &str = "workload-identity.carto.com/config-hash";
pub const SKIP: &str = "workload-identity.carto.com/skip-containers";
pub const INJECT: &str = "workload-identity.carto.com/inject";
pub const MANAGED: &str = "workload-identity.carto.com/managed-env";

/// The four managed variables with the acme values, in injection order.
pub fn acme_env() -> Vec<(&'static str, &'static str)> {
    vec![
        (WORKFLOWS_TEMP, TEMP_V),
        (BILLING_PROJECT, BILLING_V),
        (SA_EMAIL, EMAIL_V),
        (OWNER_ID, OWNER_V),
    ]
}

/// The extra variables the tests' platform allows (`--extra-env`): every pass-through name the
/// tests use as a valid extra. `WORKSPACE_POSTGRES_PASSWORD` is left out on purpose: a secret a
/// platform would never pass through.
pub fn allowed() -> ExtraEnvAllowlist {
    ExtraEnvAllowlist::new([
        "WORKSPACE_SYNC_DATA_ENABLED",
        "WORKSPACE_SYNC_DATA",
        "WORKSPACE_SYNC",
        "WORKSPACE_A",
        "WORKSPACE_A_B",
        "WORKSPACE_A_1__B",
        "WORKSPACE_A_FIRST",
        "WORKSPACE_9",
        "WORKSPACE_BIG",
        "WORKSPACE_HIDDEN",
        "WORKSPACE_TAB",
        "WORKSPACE_POSTGRES_SSL_MODE",
        "WORKSPACE_POSTGRES_INTERNAL_USER",
    ])
}

/// The default settings with [`allowed`] as the allowlist.
pub fn settings_allowing_extras() -> Settings {
    Settings {
        extra_env: allowed(),
        ..Settings::default()
    }
}

pub fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The acme example data (without GKE_CLUSTER_PROJECT).
pub fn acme_data() -> BTreeMap<String, String> {
    data(&acme_env())
}

pub fn acme() -> WorkloadIdentityConfig {
    WorkloadIdentityConfig::from_data(&acme_data(), &allowed()).expect("acme config is valid")
}

pub fn config_of(pairs: &[(&str, &str)]) -> WorkloadIdentityConfig {
    WorkloadIdentityConfig::from_data(&data(pairs), &allowed()).expect("valid config")
}

/// A snapshot whose cluster default is the acme config.
pub fn snapshot() -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::from_result(Ok(acme())))
}

pub fn snapshot_of(c: WorkloadIdentityConfig) -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::from_result(Ok(c)))
}

pub fn settings() -> Settings {
    Settings::default()
}

/// The CREATE request the API server would send for `obj` (namespace `carto` by default).
pub fn req(obj: &Value) -> ReviewRequest<'static> {
    let api_version = obj["apiVersion"].as_str().expect("an apiVersion");
    let kind = obj["kind"].as_str().expect("a kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let namespace = obj["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(NS);
    let mut object = obj.clone();
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.entry("namespace").or_insert_with(|| json!(namespace));
    }
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": format!("{}s", kind.to_ascii_lowercase())});
    let r = json!({
        "uid": "uid-1", "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": name, "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": "carto-wi-webhook-review"},
        "object": object, "oldObject": null, "dryRun": true,
    });
    ReviewRequest::deserialize(r).expect("a Kubernetes object")
}

/// A hand-written AdmissionRequest (as the API server sends it).
pub fn raw_req(
    operation: &str,
    group: &str,
    kind: &str,
    resource: &str,
    sub_resource: Option<&str>,
    name: &str,
    object: Value,
) -> ReviewRequest<'static> {
    let version = "v1";
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    let mut r = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": name, "namespace": NS, "operation": operation,
        "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
        "object": object, "oldObject": null, "dryRun": false,
    });
    if let Some(s) = sub_resource {
        r["subResource"] = json!(s);
        r["requestSubResource"] = json!(s);
    }
    ReviewRequest::deserialize(r).expect("an AdmissionRequest")
}

/// Apply a patch to a copy of `obj`; the patch must apply cleanly.
pub fn apply(obj: &Value, patch: &Patch) -> Value {
    let mut out = obj.clone();
    json_patch::patch(&mut out, patch).unwrap_or_else(|e| {
        panic!(
            "patch {} does not apply: {e}",
            serde_json::to_string(patch).unwrap()
        )
    });
    out
}

/// Mutate `obj`; apply the patch (if any); check that a second pass over the result is a no-op.
/// Returns the (possibly) patched object and the first decision.
pub fn mutate_with(obj: &Value, snap: &ConfigSnapshot, settings: &Settings) -> (Value, Decision) {
    let d = admission::review(Webhook::Mutate, &req(obj), snap, settings);
    assert!(d.allowed(), "mutation never denies");
    let out = match &d.patch {
        Some(p) => {
            assert!(!p.0.is_empty(), "a present patch is never empty");
            apply(obj, p)
        }
        None => obj.clone(),
    };
    let again = admission::review(Webhook::Mutate, &req(&out), snap, settings);
    assert_eq!(
        again
            .patch
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap()),
        None,
        "second pass must yield no patch"
    );
    (out, d)
}

pub fn mutate_default(obj: &Value) -> (Value, Decision) {
    mutate_with(obj, &snapshot(), &settings())
}

/// The default settings with `--object-opt-out`: the object label and `skip-containers` count.
pub fn object_opt_out() -> Settings {
    Settings {
        object_opt_out: true,
        ..Settings::default()
    }
}

/// Mutate with the acme snapshot and `--object-opt-out`.
pub fn mutate_opting_out(obj: &Value) -> (Value, Decision) {
    mutate_with(obj, &snapshot(), &object_opt_out())
}

/// The patch as JSON text (for checking pointer escaping and minimality).
pub fn patch_json(d: &Decision) -> Value {
    serde_json::to_value(d.patch.as_ref().expect("a patch")).unwrap()
}

pub fn env_var(name: &str, value: &str) -> Value {
    json!({"name": name, "value": value})
}

/// The four acme variables as env entries.
pub fn acme_entries() -> Vec<Value> {
    acme_env().iter().map(|(k, v)| env_var(k, v)).collect()
}

pub fn container(name: &str, env: Option<Value>) -> Value {
    let mut c = json!({"name": name, "image": format!("example/{name}:1")});
    if let Some(e) = env {
        c["env"] = e;
    }
    c
}

/// A Deployment running as `sa` with the given containers and pod-template annotations.
pub fn deployment(name: &str, sa: &str, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {"checksum/config": "abc"}
                },
                "spec": {"serviceAccountName": sa, "containers": containers}
            }
        }
    })
}

pub fn service_account(name: &str, annotations: Option<Value>) -> Value {
    let mut sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": NS},
        "automountServiceAccountToken": false
    });
    if let Some(a) = annotations {
        sa["metadata"]["annotations"] = a;
    }
    sa
}

/// The env list of container `i` (in `containers`).
pub fn env_of(obj: &Value, field: &str, i: usize) -> Value {
    obj["spec"]["template"]["spec"][field][i]["env"].clone()
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Every object of a fixture stream, parsed.
pub fn fixture_objects(name: &str) -> Vec<Value> {
    carto_wi_webhook::yaml::split_documents(&fixture(name))
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| carto_wi_webhook::yaml::parse(d.text).expect("fixture parses"))
        .collect()
}

pub fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not in fixture"))
}
