//! Mutation: every case of PRODUCT.md. Each patch is applied with json-patch and compared with
//! the expected object, and a second pass over the result must yield no patch.

use carto_wi_webhook::admission::{self, Kind, Webhook};
use carto_wi_webhook::config::{ConfigEntry, ConfigSnapshot, WorkloadIdentityConfig};
use carto_wi_webhook::settings::Settings;
use serde_json::{Value, json};

use crate::common::*;

fn hash() -> String {
    acme().hash
}

/// `obj` with the hash stamped on the pod template annotations (which exist).
fn stamped(mut obj: Value) -> Value {
    obj["spec"]["template"]["metadata"]["annotations"][HASH] = json!(hash());
    obj
}

fn with_env(mut obj: Value, i: usize, env: Value) -> Value {
    obj["spec"]["template"]["spec"]["containers"][i]["env"] = env;
    obj
}

// ---------------------------------------------------------------- ServiceAccount

#[test]
fn service_account_annotations_absent() {
    let sa = service_account(SA, None);
    let (out, d) = mutate_default(&sa);
    assert_eq!(d.kind, Some(Kind::ServiceAccount));
    let mut want = sa.clone();
    want["metadata"]["annotations"] = json!({GCP_SA: EMAIL_V, HASH: hash()});
    assert_eq!(out, want);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    // One `add` of the whole map.
    assert_eq!(
        patch_json(&d),
        json!([{"op": "add", "path": "/metadata/annotations", "value": {GCP_SA: EMAIL_V, HASH: hash()}}])
    );
}

#[test]
fn service_account_annotations_null() {
    let sa = service_account(SA, Some(Value::Null));
    let (out, d) = mutate_default(&sa);
    let mut want = sa.clone();
    want["metadata"]["annotations"] = json!({GCP_SA: EMAIL_V, HASH: hash()});
    assert_eq!(out, want);
    assert!(d.warnings.is_empty());
}

/// Found by fuzzing (fuzz/, target `admission`): named by the request only, the object has no
/// `metadata`; the patch must add it whole rather than a member of a missing parent.
#[test]
fn service_account_without_metadata_gets_it_added() {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount"});
    let req = raw_req(
        "CREATE",
        "",
        "ServiceAccount",
        "serviceaccounts",
        None,
        SA,
        sa.clone(),
    );
    let d = admission::review(Webhook::Mutate, &req, &snapshot(), &settings());
    let out = apply(&sa, d.patch.as_ref().expect("a patch"));
    assert_eq!(
        out["metadata"],
        json!({"annotations": {GCP_SA: EMAIL_V, HASH: hash()}})
    );
    let req = raw_req(
        "CREATE",
        "",
        "ServiceAccount",
        "serviceaccounts",
        None,
        SA,
        out,
    );
    let again = admission::review(Webhook::Mutate, &req, &snapshot(), &settings());
    assert_eq!(again.patch, None, "a second pass yields no patch");
    let valid = admission::review(Webhook::Validate, &req, &snapshot(), &settings());
    assert!(valid.allowed(), "{:?}", valid.denial);
}

#[test]
fn service_account_annotations_empty_map_escapes_the_slash() {
    let sa = service_account(SA, Some(json!({})));
    let (out, d) = mutate_default(&sa);
    let mut want = sa.clone();
    want["metadata"]["annotations"] = json!({GCP_SA: EMAIL_V, HASH: hash()});
    assert_eq!(out, want);
    assert_eq!(
        patch_json(&d),
        json!([
            {"op": "add", "path": "/metadata/annotations/iam.gke.io~1gcp-service-account", "value": EMAIL_V},
            {"op": "add", "path": "/metadata/annotations/workload-identity.carto.com~1config-hash", "value": hash()},
        ])
    );
    // The serialized patch carries the escaped pointer, never a raw slash inside a key.
    let text = serde_json::to_string(d.patch.as_ref().unwrap()).unwrap();
    assert!(text.contains("iam.gke.io~1gcp-service-account"), "{text}");
    assert!(!text.contains("iam.gke.io/gcp"), "{text}");
}

#[test]
fn service_account_keeps_other_annotations() {
    let sa = service_account(
        SA,
        Some(json!({"a~b/c": "1", "helm.sh/resource-policy": "keep"})),
    );
    let (out, _) = mutate_default(&sa);
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"a~b/c": "1", "helm.sh/resource-policy": "keep", GCP_SA: EMAIL_V, HASH: hash()})
    );
}

#[test]
fn service_account_already_annotated_is_untouched() {
    let sa = service_account(SA, Some(json!({GCP_SA: EMAIL_V, HASH: hash()})));
    let (out, d) = mutate_default(&sa);
    assert_eq!(d.patch, None);
    assert_eq!(out, sa);
    assert!(d.warnings.is_empty());
    // Same email, stale hash: only the hash changes, without a warning.
    let stale = service_account(SA, Some(json!({GCP_SA: EMAIL_V, HASH: "000000000000"})));
    let (out, d) = mutate_default(&stale);
    assert_eq!(out["metadata"]["annotations"][HASH], json!(hash()));
    assert_eq!(
        patch_json(&d),
        json!([{"op": "replace", "path": "/metadata/annotations/workload-identity.carto.com~1config-hash", "value": hash()}])
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn service_account_different_email_is_replaced_with_a_warning() {
    let old = "someone-else@other-project.iam.gserviceaccount.com";
    let sa = service_account(SA, Some(json!({GCP_SA: old})));
    let (out, d) = mutate_default(&sa);
    assert_eq!(
        out["metadata"]["annotations"],
        json!({GCP_SA: EMAIL_V, HASH: hash()})
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    // The old value is quoted (shortened past 40 chars), the new one in full.
    assert!(
        d.warnings[0].contains("someone-else@other-project"),
        "{}",
        d.warnings[0]
    );
    assert!(d.warnings[0].contains(EMAIL_V), "{}", d.warnings[0]);
    assert!(d.warnings[0].contains(GCP_SA), "{}", d.warnings[0]);
}

#[test]
fn other_service_accounts_are_untouched() {
    for name in ["carto-accounts-www", "default", "carto-common-backend-2"] {
        let sa = service_account(name, None);
        let d = admission::review(Webhook::Mutate, &req(&sa), &snapshot(), &settings());
        assert_eq!(d.patch, None, "{name}");
        assert!(d.warnings.is_empty(), "{name}");
    }
}

#[test]
fn custom_service_account_setting() {
    let s = Settings {
        service_account: "my-backend".into(),
        ..settings()
    };
    let (out, _) = mutate_with(&service_account("my-backend", None), &snapshot(), &s);
    assert_eq!(out["metadata"]["annotations"][GCP_SA], EMAIL_V);
    let d = admission::review(
        Webhook::Mutate,
        &req(&service_account(SA, None)),
        &snapshot(),
        &s,
    );
    assert_eq!(d.patch, None);
    let dep = deployment("x", "my-backend", vec![container("app", None)]);
    let (out, _) = mutate_with(&dep, &snapshot(), &s);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
}

// ---------------------------------------------------------------- Deployment env

#[test]
fn env_absent_is_created() {
    let dep = deployment("carto-import-api", SA, vec![container("app", None)]);
    let (out, d) = mutate_default(&dep);
    assert_eq!(d.kind, Some(Kind::Deployment));
    assert_eq!(out, stamped(with_env(dep, 0, json!(acme_entries()))));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn env_null_is_created() {
    let dep = deployment(
        "carto-router",
        SA,
        vec![container("app", Some(Value::Null))],
    );
    let (out, _) = mutate_default(&dep);
    assert_eq!(out, stamped(with_env(dep, 0, json!(acme_entries()))));
}

#[test]
fn env_empty_list_is_appended_to() {
    let dep = deployment("x", SA, vec![container("app", Some(json!([])))]);
    let (out, _) = mutate_default(&dep);
    assert_eq!(out, stamped(with_env(dep, 0, json!(acme_entries()))));
}

#[test]
fn env_present_keeps_existing_entries_in_order() {
    let existing = json!([
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "carto-valkey", "key": "redis-password"}}},
        {"name": "LOG_LEVEL", "value": "info"},
    ]);
    let dep = deployment("x", SA, vec![container("app", Some(existing.clone()))]);
    let (out, d) = mutate_default(&dep);
    let mut want_env = existing.as_array().unwrap().clone();
    want_env.extend(acme_entries());
    assert_eq!(out, stamped(with_env(dep, 0, json!(want_env))));
    // Appends use "-", never an index that could shift.
    let ops = patch_json(&d);
    let appends = ops
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["path"] == "/spec/template/spec/containers/0/env/-")
        .count();
    assert_eq!(appends, 4);
}

#[test]
fn same_value_untouched_other_value_replaced_with_warning() {
    let env = json!([
        {"name": WORKFLOWS_TEMP, "value": TEMP_V},
        {"name": BILLING_PROJECT, "value": "old-billing"},
        {"name": "KEEP", "value": "me"},
    ]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, d) = mutate_default(&dep);
    assert_eq!(
        env_of(&out, "containers", 0),
        json!([
            {"name": WORKFLOWS_TEMP, "value": TEMP_V},
            {"name": BILLING_PROJECT, "value": BILLING_V},
            {"name": "KEEP", "value": "me"},
            {"name": SA_EMAIL, "value": EMAIL_V},
            {"name": OWNER_ID, "value": OWNER_V},
        ])
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(d.warnings[0].contains(BILLING_PROJECT), "{}", d.warnings[0]);
    assert!(d.warnings[0].contains("old-billing"), "{}", d.warnings[0]);
    assert!(d.warnings[0].contains("\"app\""), "{}", d.warnings[0]);
    // Minimal: the untouched entry gets no operation; the changed one is a single replace.
    let ops = patch_json(&d);
    assert!(ops.as_array().unwrap().contains(&json!(
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/1/value", "value": BILLING_V}
    )));
    assert!(!ops.to_string().contains("/env/0"), "{ops}");
}

#[test]
fn all_four_correct_only_stamps_the_hash() {
    let dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    let (out, d) = mutate_default(&dep);
    assert_eq!(out, stamped(dep));
    assert_eq!(
        patch_json(&d),
        json!([{"op": "add", "path": "/spec/template/metadata/annotations/workload-identity.carto.com~1config-hash", "value": hash()}])
    );
}

#[test]
fn value_from_is_replaced_with_a_warning() {
    let env = json!([
        {"name": SA_EMAIL, "valueFrom": {"configMapKeyRef": {"name": "wi", "key": "email"}}},
    ]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, d) = mutate_default(&dep);
    let e = env_of(&out, "containers", 0);
    assert_eq!(e[0], env_var(SA_EMAIL, EMAIL_V), "valueFrom must be gone");
    assert_eq!(e.as_array().unwrap().len(), 4);
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].contains("valueFrom"), "{}", d.warnings[0]);
}

#[test]
fn value_and_value_from_together_are_replaced() {
    let env = json!([{"name": OWNER_ID, "value": OWNER_V, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, _) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0)[0], env_var(OWNER_ID, OWNER_V));
}

#[test]
fn name_without_value_and_null_value_are_set() {
    let env = json!([{"name": WORKFLOWS_TEMP}, {"name": BILLING_PROJECT, "value": null}, {"name": SA_EMAIL, "value": ""}]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, _) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()),);
}

#[test]
fn null_value_from_with_the_right_value_is_untouched() {
    let env = json!([{"name": WORKFLOWS_TEMP, "value": TEMP_V, "valueFrom": null}]);
    let dep = deployment("x", SA, vec![container("app", Some(env.clone()))]);
    let (out, d) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0)[0], env[0]);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn duplicated_names_all_end_with_our_value() {
    let env = json!([
        {"name": BILLING_PROJECT, "value": "first"},
        {"name": "OTHER", "value": "x"},
        {"name": BILLING_PROJECT, "value": BILLING_V},
        {"name": BILLING_PROJECT, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, d) = mutate_default(&dep);
    let e = env_of(&out, "containers", 0);
    let billing: Vec<&Value> = e
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["name"] == BILLING_PROJECT)
        .collect();
    assert_eq!(
        billing.len(),
        3,
        "duplicates are kept, not removed or added to"
    );
    for b in billing {
        assert_eq!(*b, env_var(BILLING_PROJECT, BILLING_V));
    }
    assert_eq!(e[1], json!({"name": "OTHER", "value": "x"}));
    assert_eq!(e.as_array().unwrap().len(), 7);
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
}

#[test]
fn every_container_is_injected() {
    let dep = deployment(
        "carto-router",
        SA,
        vec![
            container("router-http", Some(Value::Null)),
            container("router-metrics", None),
        ],
    );
    let (out, _) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
    assert_eq!(env_of(&out, "containers", 1), json!(acme_entries()));
}

#[test]
fn extra_workspace_keys_are_injected_too() {
    let mut pairs = acme_env();
    pairs.push(("WORKSPACE_SYNC_DATA_ENABLED", "true"));
    let snap = snapshot_of(config_of(&pairs));
    let env = json!([{"name": "WORKSPACE_SYNC_DATA_ENABLED", "value": "false"}]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, d) = mutate_with(&dep, &snap, &settings());
    let e = env_of(&out, "containers", 0);
    assert_eq!(e[0], env_var("WORKSPACE_SYNC_DATA_ENABLED", "true"));
    assert_eq!(e.as_array().unwrap().len(), 5);
    assert_eq!(d.warnings.len(), 1);
}

#[test]
fn env_that_is_not_a_list_is_left_alone_with_a_warning() {
    let dep = deployment("x", SA, vec![container("app", Some(json!({"A": "b"})))]);
    let (out, d) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!({"A": "b"}));
    assert!(
        d.warnings.iter().any(|w| w.contains("not a list")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn deprecated_service_account_field_counts() {
    let mut dep = deployment("x", "", vec![container("app", None)]);
    let pod = dep["spec"]["template"]["spec"].as_object_mut().unwrap();
    pod.remove("serviceAccountName");
    pod.insert("serviceAccount".into(), json!(SA));
    let (out, _) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
}

#[test]
fn non_target_deployments_are_untouched() {
    let mut no_sa = deployment("x", SA, vec![container("app", None)]);
    no_sa["spec"]["template"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("serviceAccountName");
    let mut name_wins = deployment("x", "carto-notifier", vec![container("app", None)]);
    name_wins["spec"]["template"]["spec"]["serviceAccount"] = json!(SA);
    for dep in [
        deployment(
            "carto-notifier",
            "carto-notifier",
            vec![container("notifier", None)],
        ),
        deployment("x", "default", vec![container("app", None)]),
        no_sa,
        name_wins,
    ] {
        let d = admission::review(Webhook::Mutate, &req(&dep), &snapshot(), &settings());
        assert_eq!(d.patch, None, "{dep}");
        assert!(d.warnings.is_empty());
    }
}

#[test]
fn other_kinds_are_untouched() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"serviceAccountName": SA, "containers": [{"name": "a"}]}});
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"template": {"spec": {"serviceAccountName": SA, "containers": [{"name": "a"}]}}}});
    // A Deployment of another API group is not ours either.
    let fake = json!({"apiVersion": "example.com/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"serviceAccountName": SA, "containers": [{"name": "a"}]}}}});
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "carto-workload-identity"}, "data": {}});
    for o in [pod, sts, fake, cm] {
        let d = admission::review(Webhook::Mutate, &req(&o), &snapshot(), &settings());
        assert_eq!(d.patch, None, "{o}");
        assert!(d.warnings.is_empty());
    }
}

// ---------------------------------------------------------------- skip / init / allowlist

#[test]
fn skip_containers_on_the_deployment() {
    let mut dep = deployment(
        "x",
        SA,
        vec![
            container("app", None),
            container("istio-proxy", None),
            container("log", None),
        ],
    );
    dep["metadata"]["annotations"] = json!({SKIP: "istio-proxy, log"});
    let (out, d) = mutate_opting_out(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
    assert_eq!(env_of(&out, "containers", 1), Value::Null);
    assert_eq!(env_of(&out, "containers", 2), Value::Null);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn skip_containers_on_the_pod_template_and_unknown_name_warns() {
    let mut dep = deployment(
        "x",
        SA,
        vec![container("app", None), container("sidecar", None)],
    );
    dep["spec"]["template"]["metadata"]["annotations"][SKIP] = json!("sidecar,no-such-container");
    let (out, d) = mutate_opting_out(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
    assert_eq!(env_of(&out, "containers", 1), Value::Null);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].contains("no-such-container"),
        "{}",
        d.warnings[0]
    );
    // The annotation itself is left as written.
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"][SKIP],
        "sidecar,no-such-container"
    );
}

#[test]
fn skipping_every_container_still_stamps_the_hash() {
    let mut dep = deployment("x", SA, vec![container("app", None)]);
    dep["metadata"]["annotations"] = json!({SKIP: "app"});
    let (out, _) = mutate_opting_out(&dep);
    assert_eq!(out, stamped(dep));
}

fn with_init() -> Value {
    let mut dep = deployment(
        "carto-workspace-api",
        SA,
        vec![container(
            "workspace-api",
            Some(json!([{"name": "A", "value": "1"}])),
        )],
    );
    dep["spec"]["template"]["spec"]["initContainers"] = json!([container(
        "workspace-migrations",
        Some(json!([{"name": "B", "value": "2"}]))
    )]);
    dep
}

#[test]
fn init_containers_off_by_default() {
    let dep = with_init();
    let (out, _) = mutate_default(&dep);
    assert_eq!(
        env_of(&out, "initContainers", 0),
        json!([{"name": "B", "value": "2"}])
    );
    assert_eq!(env_of(&out, "containers", 0).as_array().unwrap().len(), 5);
}

#[test]
fn init_containers_with_the_setting() {
    let s = Settings {
        include_init_containers: true,
        ..object_opt_out()
    };
    let dep = with_init();
    let (out, _) = mutate_with(&dep, &snapshot(), &s);
    let mut want = vec![json!({"name": "B", "value": "2"})];
    want.extend(acme_entries());
    assert_eq!(env_of(&out, "initContainers", 0), json!(want));
    assert_eq!(env_of(&out, "containers", 0).as_array().unwrap().len(), 5);
    // skip-containers applies to init containers too.
    let mut skipped = with_init();
    skipped["metadata"]["annotations"] = json!({SKIP: "workspace-migrations"});
    let (out, d) = mutate_with(&skipped, &snapshot(), &s);
    assert_eq!(
        env_of(&out, "initContainers", 0),
        json!([{"name": "B", "value": "2"}])
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn init_containers_null_with_the_setting() {
    let s = Settings {
        include_init_containers: true,
        ..settings()
    };
    let mut dep = deployment("x", SA, vec![container("app", None)]);
    dep["spec"]["template"]["spec"]["initContainers"] = Value::Null;
    let (out, _) = mutate_with(&dep, &snapshot(), &s);
    assert_eq!(
        out["spec"]["template"]["spec"]["initContainers"],
        Value::Null
    );
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
}

#[test]
fn deployments_allowlist() {
    let s = Settings {
        deployments: vec![
            "carto-workspace-api".into(),
            "carto-workspace-subscriber".into(),
        ],
        ..settings()
    };
    let listed = deployment("carto-workspace-api", SA, vec![container("app", None)]);
    let (out, _) = mutate_with(&listed, &snapshot(), &s);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
    let unlisted = deployment("carto-maps-api", SA, vec![container("app", None)]);
    let d = admission::review(Webhook::Mutate, &req(&unlisted), &snapshot(), &s);
    assert_eq!(d.patch, None);
    // The allowlist narrows Deployments only; it never widens to other ServiceAccounts.
    let other_sa = deployment(
        "carto-workspace-api",
        "default",
        vec![container("app", None)],
    );
    assert_eq!(
        admission::review(Webhook::Mutate, &req(&other_sa), &snapshot(), &s).patch,
        None
    );
    // The ServiceAccount is still annotated.
    assert!(
        admission::review(
            Webhook::Mutate,
            &req(&service_account(SA, None)),
            &snapshot(),
            &s
        )
        .patch
        .is_some()
    );
}

// ---------------------------------------------------------------- opt-out

#[test]
fn opt_out_label_on_the_object() {
    let mut dep = deployment("x", SA, vec![container("app", None)]);
    dep["metadata"]["labels"] = json!({INJECT: "false"});
    assert_eq!(
        admission::review(Webhook::Mutate, &req(&dep), &snapshot(), &object_opt_out()).patch,
        None
    );
    dep["metadata"]["labels"] = json!({INJECT: "False"});
    assert_eq!(
        admission::review(Webhook::Mutate, &req(&dep), &snapshot(), &object_opt_out()).patch,
        None
    );
    let mut sa = service_account(SA, None);
    sa["metadata"]["labels"] = json!({INJECT: "false"});
    assert_eq!(
        admission::review(Webhook::Mutate, &req(&sa), &snapshot(), &object_opt_out()).patch,
        None
    );
    // Any other value is not an opt-out.
    dep["metadata"]["labels"] = json!({INJECT: "true"});
    assert!(
        admission::review(Webhook::Mutate, &req(&dep), &snapshot(), &object_opt_out())
            .patch
            .is_some()
    );
}

#[test]
fn object_opt_outs_are_ignored_without_the_flag() {
    // Whoever may edit a Deployment cannot escape enforcement: the label and skip-containers
    // are ignored (with a warning naming them) unless the platform allows object opt-out.
    let mut dep = deployment(
        "x",
        SA,
        vec![container("app", None), container("sidecar", None)],
    );
    dep["metadata"]["labels"] = json!({INJECT: "false"});
    dep["metadata"]["annotations"] = json!({SKIP: "app,sidecar"});
    let (out, d) = mutate_default(&dep);
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
    assert_eq!(env_of(&out, "containers", 1), json!(acme_entries()));
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    assert!(d.warnings[0].contains(INJECT) && d.warnings[0].contains("--object-opt-out"));
    assert!(d.warnings[1].contains(SKIP) && d.warnings[1].contains("ignored"));
    let mut sa = service_account(SA, None);
    sa["metadata"]["labels"] = json!({INJECT: "false"});
    let d = admission::review(Webhook::Mutate, &req(&sa), &snapshot(), &settings());
    assert!(d.patch.is_some());
    assert!(d.warnings[0].contains(INJECT), "{:?}", d.warnings);
    // Validation holds them to the config too.
    let v = admission::review(Webhook::Validate, &req(&dep), &snapshot(), &settings());
    assert!(!v.allowed(), "{:?}", v.warnings);
    assert_eq!(v.violation_count(), 2, "{:?}", v.violations);
}

#[test]
fn opt_out_label_on_the_namespace() {
    let mut snap = snapshot();
    snap.set_opted_out(NS, true);
    let dep = deployment("x", SA, vec![container("app", None)]);
    let sa = service_account(SA, None);
    for o in [&dep, &sa] {
        let d = admission::review(Webhook::Mutate, &req(o), &snap, &settings());
        assert_eq!(d.patch, None);
        assert!(d.warnings.is_empty());
    }
    // Other namespaces are unaffected; clearing the label restores injection.
    let mut elsewhere = dep.clone();
    elsewhere["metadata"]["namespace"] = json!("other");
    assert!(
        admission::review(Webhook::Mutate, &req(&elsewhere), &snap, &settings())
            .patch
            .is_some()
    );
    snap.set_opted_out(NS, false);
    assert!(
        admission::review(Webhook::Mutate, &req(&dep), &snap, &settings())
            .patch
            .is_some()
    );
}

// ---------------------------------------------------------------- config hash stamp

#[test]
fn hash_stamp_without_template_metadata() {
    let mut dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    dep["spec"]["template"]
        .as_object_mut()
        .unwrap()
        .remove("metadata");
    let (out, d) = mutate_default(&dep);
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"annotations": {HASH: hash()}})
    );
    assert_eq!(
        patch_json(&d),
        json!([{"op": "add", "path": "/spec/template/metadata", "value": {"annotations": {HASH: hash()}}}])
    );
}

#[test]
fn hash_stamp_with_null_template_metadata() {
    let mut dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    dep["spec"]["template"]["metadata"] = Value::Null;
    let (out, _) = mutate_default(&dep);
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"annotations": {HASH: hash()}})
    );
}

#[test]
fn hash_stamp_with_null_annotations() {
    let mut dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    dep["spec"]["template"]["metadata"]["annotations"] = Value::Null;
    let (out, _) = mutate_default(&dep);
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"labels": {"app": "x"}, "annotations": {HASH: hash()}})
    );
}

#[test]
fn hash_stamp_with_present_annotations() {
    let mut dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    dep["spec"]["template"]["metadata"]["annotations"] = json!({"a/b": "1", "c~d": "2"});
    let (out, _) = mutate_default(&dep);
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"],
        json!({"a/b": "1", "c~d": "2", HASH: hash()})
    );
}

#[test]
fn stale_hash_is_replaced_so_pods_roll() {
    let mut dep = deployment("x", SA, vec![container("app", Some(json!(acme_entries())))]);
    dep["spec"]["template"]["metadata"]["annotations"][HASH] = json!("0123456789ab");
    let (out, d) = mutate_default(&dep);
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"][HASH],
        json!(hash())
    );
    assert_eq!(
        patch_json(&d),
        json!([{"op": "replace", "path": "/spec/template/metadata/annotations/workload-identity.carto.com~1config-hash", "value": hash()}])
    );
}

#[test]
fn config_change_updates_values_and_hash() {
    let dep = deployment("x", SA, vec![container("app", None)]);
    let (v1, _) = mutate_default(&dep);
    let new_cfg = config_of(&[
        (WORKFLOWS_TEMP, TEMP_V),
        (BILLING_PROJECT, "acme-gke-prod-2"),
        (SA_EMAIL, EMAIL_V),
        (OWNER_ID, OWNER_V),
    ]);
    let new_hash = new_cfg.hash.clone();
    assert_ne!(new_hash, hash());
    let (v2, d) = mutate_with(&v1, &snapshot_of(new_cfg), &settings());
    assert_eq!(
        env_of(&v2, "containers", 0)[1],
        env_var(BILLING_PROJECT, "acme-gke-prod-2")
    );
    assert_eq!(
        v2["spec"]["template"]["metadata"]["annotations"][HASH],
        json!(new_hash)
    );
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
}

// ---------------------------------------------------------------- configuration resolution

#[test]
fn namespace_config_map_replaces_the_default_whole() {
    // The namespace config has no extra key; the default has one: nothing is merged.
    let mut default_pairs = acme_env();
    default_pairs.push(("WORKSPACE_SYNC_DATA_ENABLED", "true"));
    let ns_pairs = [
        (WORKFLOWS_TEMP, "team-project.temp"),
        (BILLING_PROJECT, "team-project"),
        (SA_EMAIL, "team-sa@team-project.iam.gserviceaccount.com"),
        (OWNER_ID, "auth0|team"),
    ];
    let ns_cfg = config_of(&ns_pairs);
    let mut snap = snapshot_of(config_of(&default_pairs));
    snap.set_namespace(NS, ConfigEntry::from_result(Ok(ns_cfg.clone())));
    let dep = deployment("x", SA, vec![container("app", None)]);
    let (out, _) = mutate_with(&dep, &snap, &settings());
    let want: Vec<Value> = ns_pairs.iter().map(|(k, v)| env_var(k, v)).collect();
    assert_eq!(env_of(&out, "containers", 0), json!(want));
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"][HASH],
        json!(ns_cfg.hash)
    );
    let (sa, _) = mutate_with(&service_account(SA, None), &snap, &settings());
    assert_eq!(
        sa["metadata"]["annotations"][GCP_SA],
        "team-sa@team-project.iam.gserviceaccount.com"
    );
    // Another namespace still gets the default, extra key included.
    let mut other = dep.clone();
    other["metadata"]["namespace"] = json!("elsewhere");
    let (out, _) = mutate_with(&other, &snap, &settings());
    assert_eq!(env_of(&out, "containers", 0).as_array().unwrap().len(), 5);
}

#[test]
fn no_config_allows_unpatched_with_a_warning() {
    let snap = ConfigSnapshot::default();
    for o in [
        deployment("x", SA, vec![container("app", None)]),
        service_account(SA, None),
    ] {
        let d = admission::review(Webhook::Mutate, &req(&o), &snap, &settings());
        assert!(d.allowed());
        assert_eq!(d.patch, None);
        assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
        assert!(
            d.warnings[0].contains("carto-workload-identity"),
            "{}",
            d.warnings[0]
        );
        assert!(d.warnings[0].contains("not injected"), "{}", d.warnings[0]);
    }
    // Non-targets get no warning.
    let d = admission::review(
        Webhook::Mutate,
        &req(&service_account("default", None)),
        &snap,
        &settings(),
    );
    assert!(d.warnings.is_empty());
}

#[test]
fn broken_config_allows_unpatched_with_a_warning() {
    let broken = WorkloadIdentityConfig::from_data(&data(&[(BILLING_PROJECT, "X")]), &allowed());
    let snap = ConfigSnapshot::with_default(ConfigEntry::from_result(broken));
    let d = admission::review(
        Webhook::Mutate,
        &req(&deployment("x", SA, vec![container("app", None)])),
        &snap,
        &settings(),
    );
    assert!(d.allowed());
    assert_eq!(d.patch, None);
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].contains("invalid"), "{}", d.warnings[0]);
}

// ---------------------------------------------------------------- operations and request shapes

fn deployment_req(
    op: &str,
    sub: Option<&str>,
    object: Value,
) -> carto_wi_webhook::admission::view::ReviewRequest<'static> {
    raw_req(op, "apps", "Deployment", "deployments", sub, "x", object)
}

#[test]
fn delete_and_connect_are_untouched() {
    let dep = deployment("x", SA, vec![container("app", None)]);
    for op in ["DELETE", "CONNECT"] {
        for object in [Value::Null, dep.clone()] {
            let d = admission::review(
                Webhook::Mutate,
                &deployment_req(op, None, object),
                &snapshot(),
                &settings(),
            );
            assert!(d.allowed());
            assert_eq!(d.patch, None, "{op}");
            assert!(d.warnings.is_empty());
        }
    }
}

#[test]
fn null_object_is_untouched() {
    for op in ["CREATE", "UPDATE"] {
        let d = admission::review(
            Webhook::Mutate,
            &deployment_req(op, None, Value::Null),
            &snapshot(),
            &settings(),
        );
        assert!(d.allowed());
        assert_eq!(d.patch, None);
    }
}

#[test]
fn update_is_handled_like_create() {
    let dep = deployment("x", SA, vec![container("app", None)]);
    let d = admission::review(
        Webhook::Mutate,
        &deployment_req("UPDATE", None, dep.clone()),
        &snapshot(),
        &settings(),
    );
    let out = apply(&dep, d.patch.as_ref().unwrap());
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
}

#[test]
fn subresources_are_untouched() {
    let dep = deployment("x", SA, vec![container("app", None)]);
    for sub in ["scale", "status"] {
        let d = admission::review(
            Webhook::Mutate,
            &deployment_req("UPDATE", Some(sub), dep.clone()),
            &snapshot(),
            &settings(),
        );
        assert_eq!(d.patch, None, "{sub}");
        assert_eq!(d.kind, Some(Kind::Other));
    }
    let sa = service_account(SA, None);
    let r = raw_req(
        "CREATE",
        "",
        "ServiceAccount",
        "serviceaccounts",
        Some("token"),
        SA,
        sa,
    );
    assert_eq!(
        admission::review(Webhook::Mutate, &r, &snapshot(), &settings()).patch,
        None
    );
}

#[test]
fn dry_run_gets_the_same_answer() {
    let dep = deployment("x", SA, vec![container("app", None)]);
    let wet = deployment_req("CREATE", None, dep.clone());
    let mut dry = wet.clone();
    dry.dry_run = true;
    assert_eq!(
        admission::review(Webhook::Mutate, &wet, &snapshot(), &settings()),
        admission::review(Webhook::Mutate, &dry, &snapshot(), &settings())
    );
}

#[test]
fn generate_name_object_uses_the_request_name() {
    // kubectl create with generateName: the request carries no name; still a target.
    let mut dep = deployment("x", SA, vec![container("app", None)]);
    dep["metadata"].as_object_mut().unwrap().remove("name");
    dep["metadata"]["generateName"] = json!("x-");
    let r = raw_req(
        "CREATE",
        "apps",
        "Deployment",
        "deployments",
        None,
        "",
        dep.clone(),
    );
    let d = admission::review(Webhook::Mutate, &r, &snapshot(), &settings());
    let out = apply(&dep, d.patch.as_ref().unwrap());
    assert_eq!(env_of(&out, "containers", 0), json!(acme_entries()));
}

#[test]
fn wire_response_carries_a_base64_patch() {
    use base64::Engine;
    use carto_wi_webhook::admission::wire::ReviewResponse;
    let dep = deployment("x", SA, vec![container("app", None)]);
    let d = admission::review(Webhook::Mutate, &req(&dep), &snapshot(), &settings());
    let wire = serde_json::to_value(ReviewResponse::from_decision("u-1".into(), &d)).unwrap();
    assert_eq!(wire["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(wire["kind"], "AdmissionReview");
    let r = &wire["response"];
    assert_eq!(r["uid"], "u-1");
    assert_eq!(r["allowed"], true);
    assert_eq!(r["patchType"], "JSONPatch");
    let b64 = r["patch"]
        .as_str()
        .expect("patch is a base64 string, not an array of numbers");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(Some(patch), d.patch);
    // No patch: no patch fields at all.
    let none = admission::review(
        Webhook::Mutate,
        &req(&service_account("default", None)),
        &snapshot(),
        &settings(),
    );
    let wire = serde_json::to_value(ReviewResponse::from_decision("u-2".into(), &none)).unwrap();
    assert!(wire["response"].get("patch").is_none());
    assert!(wire["response"].get("patchType").is_none());
    assert!(wire["response"].get("status").is_none());
}

#[test]
fn objects_being_deleted_are_untouched() {
    // Finalizer removal on a terminating object: no patch (and no rollout) at all.
    let mut dep = deployment("x", SA, vec![container("app", None)]);
    dep["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    dep["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    let d = admission::review(
        Webhook::Mutate,
        &deployment_req("UPDATE", None, dep),
        &snapshot(),
        &settings(),
    );
    assert_eq!(d.patch, None);
    assert!(d.warnings.is_empty());
    let mut sa = service_account(SA, None);
    sa["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    assert_eq!(
        admission::review(Webhook::Mutate, &req(&sa), &snapshot(), &settings()).patch,
        None
    );
}
