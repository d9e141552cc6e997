//! Extra variables: only those the platform allows (`--extra-env`), never over a reference, and
//! taken back out of the targets when the config drops them (the `managed-env` record).

use carto_wi_webhook::admission::{self, Violation, Webhook};
use carto_wi_webhook::config::{ConfigProblem, ExtraEnvAllowlist, WorkloadIdentityConfig};
use serde_json::{Value, json};

use crate::common::*;

const SYNC: &str = "WORKSPACE_SYNC_DATA_ENABLED";
const PASSWORD: &str = "WORKSPACE_POSTGRES_PASSWORD";

fn with_extra(pairs: &[(&str, &str)]) -> WorkloadIdentityConfig {
    let mut all = acme_env();
    all.extend_from_slice(pairs);
    config_of(&all)
}

fn password_from_secret() -> Value {
    json!({"name": PASSWORD, "valueFrom": {"secretKeyRef": {"name": "carto-postgres", "key": "password"}}})
}

fn names_of(env: &Value) -> Vec<String> {
    env.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

fn denial(d: &admission::Decision) -> String {
    d.denial
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn annotations(obj: &Value) -> &Value {
    &obj["spec"]["template"]["metadata"]["annotations"]
}

#[test]
fn a_pass_through_key_needs_the_platforms_allowlist() {
    // The attack of issue 15: a ConfigMap that redirects the database and steals its password.
    let mut d = acme_data();
    d.insert(PASSWORD.into(), "stolen".into());
    d.insert("WORKSPACE_POSTGRES_HOST".into(), "evil.example".into());
    let problems = WorkloadIdentityConfig::from_data(&d, &ExtraEnvAllowlist::none()).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    for p in &problems {
        assert!(matches!(p, ConfigProblem::ExtraNotAllowed { .. }), "{p:?}");
        let text = p.to_string();
        assert!(text.contains("--extra-env"), "{text}");
        assert!(text.contains("policy.extraEnvAllowed"), "{text}");
        assert!(text.contains("allows none"), "{text}");
    }
    // Allowed by name, one at a time: the other is still refused, and the message lists what is.
    let only_host = ExtraEnvAllowlist::new(["WORKSPACE_POSTGRES_HOST", SYNC]);
    let problems = WorkloadIdentityConfig::from_data(&d, &only_host).unwrap_err();
    assert_eq!(problems.len(), 1);
    let text = problems[0].to_string();
    assert!(text.starts_with(PASSWORD), "{text}");
    assert!(
        text.contains("allows WORKSPACE_POSTGRES_HOST, WORKSPACE_SYNC_DATA_ENABLED"),
        "{text}"
    );
    d.remove(PASSWORD);
    let c = WorkloadIdentityConfig::from_data(&d, &only_host).expect("allowed");
    assert_eq!(c.env_value("WORKSPACE_POSTGRES_HOST"), Some("evil.example"));
}

#[test]
fn validate_refuses_a_config_map_with_an_extra_not_allowed() {
    let mut data: serde_json::Map<String, Value> = acme_env()
        .into_iter()
        .map(|(k, v)| (k.into(), json!(v)))
        .collect();
    data.insert(PASSWORD.into(), json!("stolen"));
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity", "namespace": NS}, "data": data});
    let d = admission::review(Webhook::Validate, &req(&cm), &snapshot(), &settings());
    assert!(!d.allowed());
    assert!(denial(&d).contains("--extra-env"), "{}", denial(&d));
    // With the name allowed, the same ConfigMap is accepted.
    let s = carto_wi_webhook::settings::Settings {
        extra_env: ExtraEnvAllowlist::new([PASSWORD]),
        ..settings()
    };
    assert!(admission::review(Webhook::Validate, &req(&cm), &snapshot(), &s).allowed());
}

#[test]
fn an_extra_never_replaces_a_reference() {
    let snap = snapshot_of(config_of(
        &[acme_env(), vec![("WORKSPACE_POSTGRES_SSL_MODE", "require")]].concat(),
    ));
    // Even when the platform allows the name, a Secret reference is never replaced by a literal.
    let allowed = ExtraEnvAllowlist::new(["WORKSPACE_POSTGRES_SSL_MODE", PASSWORD]);
    let mut data = acme_data();
    data.insert(PASSWORD.into(), "stolen".into());
    let snap_pw = snapshot_of(WorkloadIdentityConfig::from_data(&data, &allowed).unwrap());
    let env = json!([password_from_secret(), {"name": "WORKSPACE_POSTGRES_SSL_MODE", "value": "disable"}]);
    let dep = deployment(
        "carto-workspace-api",
        SA,
        vec![container("workspace-api", Some(env))],
    );
    let (out, d) = mutate_with(&dep, &snap_pw, &settings());
    let e = env_of(&out, "containers", 0);
    assert_eq!(e[0], password_from_secret(), "the reference is kept");
    assert!(
        e.as_array()
            .unwrap()
            .iter()
            .all(|x| x["name"] != PASSWORD || x.get("value").is_none()),
        "{e}"
    );
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains(PASSWORD) && w.contains("never replaces a reference")),
        "{:?}",
        d.warnings
    );
    // Validation (deny) refuses it, naming the container and the variable.
    let v = admission::review(Webhook::Validate, &req(&out), &snap_pw, &settings());
    assert!(!v.allowed());
    assert!(
        matches!(&v.violations[..], [Violation::ExtraOverReference { container, name }]
            if container == "workspace-api" && name == PASSWORD),
        "{:?}",
        v.violations
    );
    assert!(denial(&v).contains("workspace-api"));
    // A literal of another extra is still set to the config's value (today's rule).
    let (out, _) = mutate_with(&dep, &snap, &settings());
    let e = env_of(&out, "containers", 0);
    assert_eq!(e[1], env_var("WORKSPACE_POSTGRES_SSL_MODE", "require"));
    assert_eq!(e[0], password_from_secret());
}

#[test]
fn the_webhook_records_the_extras_it_sets() {
    let snap = snapshot_of(with_extra(&[(SYNC, "true"), ("WORKSPACE_A", "1")]));
    // WORKSPACE_A is already there with the configured value: the webhook did not add it.
    let env = json!([env_var("WORKSPACE_A", "1"), env_var("LOG_LEVEL", "info")]);
    let dep = deployment("x", SA, vec![container("app", Some(env))]);
    let (out, _) = mutate_with(&dep, &snap, &settings());
    assert_eq!(annotations(&out)[MANAGED], json!(SYNC));
    // A container without env gets every variable: every extra is recorded.
    let bare = deployment("x", SA, vec![container("app", None)]);
    let (out, _) = mutate_with(&bare, &snap, &settings());
    assert_eq!(
        annotations(&out)[MANAGED],
        json!("WORKSPACE_A,WORKSPACE_SYNC_DATA_ENABLED")
    );
    // No extras configured: no record at all (today's patches unchanged).
    let (out, _) = mutate_default(&bare);
    assert!(
        annotations(&out).get(MANAGED).is_none(),
        "{}",
        annotations(&out)
    );
}

#[test]
fn a_key_removed_from_the_config_is_removed_from_the_targets() {
    let before = snapshot_of(with_extra(&[(SYNC, "true"), ("WORKSPACE_A", "1")]));
    let env = json!([
        env_var("LOG_LEVEL", "info"),
        {"name": "WORKSPACE_A", "valueFrom": {"configMapKeyRef": {"name": "mine", "key": "a"}}},
    ]);
    let dep = deployment(
        "x",
        SA,
        vec![container("app", Some(env)), container("sidecar", None)],
    );
    let (injected, _) = mutate_with(&dep, &before, &settings());
    assert_eq!(
        annotations(&injected)[MANAGED],
        json!("WORKSPACE_A,WORKSPACE_SYNC_DATA_ENABLED")
    );
    // A variable of the user's, added later with a name the webhook never managed, stays.
    let mut edited = injected.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(env_var("WORKSPACE_MINE", "x"));
    // Both extras leave the config: every literal entry the webhook set goes, with its record.
    let after = snapshot();
    let (out, d) = mutate_with(&edited, &after, &settings());
    assert!(d.patch.is_some());
    let app = env_of(&out, "containers", 0);
    let names: Vec<&str> = app
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "LOG_LEVEL",
            "WORKSPACE_A", // the reference was never the webhook's
            WORKFLOWS_TEMP,
            BILLING_PROJECT,
            SA_EMAIL,
            OWNER_ID,
            "WORKSPACE_MINE",
        ]
    );
    assert_eq!(env_of(&out, "containers", 1), json!(acme_entries()));
    assert!(
        annotations(&out).get(MANAGED).is_none(),
        "{}",
        annotations(&out)
    );
    assert!(admission::review(Webhook::Validate, &req(&out), &after, &settings()).allowed());
    // One of two leaves: only it goes, the record keeps the other.
    let one_left = snapshot_of(with_extra(&[("WORKSPACE_A", "1")]));
    let (out, _) = mutate_with(&injected, &one_left, &settings());
    assert_eq!(annotations(&out)[MANAGED], json!("WORKSPACE_A"));
    assert!(
        !env_of(&out, "containers", 1)
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == SYNC)
    );
    assert!(
        env_of(&out, "containers", 1)
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "WORKSPACE_A")
    );
}

#[test]
fn a_forged_record_removes_nothing_it_should_not() {
    // A record naming the four Workload Identity variables or non-pass-through names is ignored;
    // only literal entries of recorded pass-through names are ever removed.
    let mut dep = deployment(
        "x",
        SA,
        vec![container(
            "app",
            Some(json!([
                env_var("HOME", "/root"),
                env_var("WORKSPACE_X", "1")
            ])),
        )],
    );
    dep["spec"]["template"]["metadata"]["annotations"] =
        json!({MANAGED: format!("HOME,{WORKFLOWS_TEMP}, ,,{}", "WORKSPACE_X")});
    let (out, _) = mutate_default(&dep);
    let names = names_of(&env_of(&out, "containers", 0));
    assert_eq!(
        names,
        ["HOME", WORKFLOWS_TEMP, BILLING_PROJECT, SA_EMAIL, OWNER_ID]
    );
    assert!(annotations(&out).get(MANAGED).is_none());
}

#[test]
fn removal_positions_hold_with_duplicates_and_replacements() {
    // Duplicated stale entries, a replaced value before them and appended variables after:
    // the patch applies (mutate_with checks it and the second pass) and removes each.
    let env = json!([
        env_var("WORKSPACE_OLD", "1"),
        env_var(BILLING_PROJECT, "other-project"),
        env_var("WORKSPACE_OLD", "2"),
        env_var("KEEP", "k"),
        env_var("WORKSPACE_OLD", "3"),
    ]);
    let mut dep = deployment("x", SA, vec![container("app", Some(env))]);
    dep["spec"]["template"]["metadata"]["annotations"] = json!({MANAGED: "WORKSPACE_OLD"});
    let (out, _) = mutate_default(&dep);
    let names = names_of(&env_of(&out, "containers", 0));
    assert_eq!(
        names,
        [BILLING_PROJECT, "KEEP", WORKFLOWS_TEMP, SA_EMAIL, OWNER_ID]
    );
}

#[test]
fn the_reconcilers_core_takes_the_key_back_too() {
    // The reconciler decides with mutate_object on the stored object: the same removal.
    let before = snapshot_of(with_extra(&[(SYNC, "true")]));
    let dep = deployment("x", SA, vec![container("app", None)]);
    let (injected, _) = mutate_with(&dep, &before, &settings());
    let view = carto_wi_webhook::admission::view::Object::from_value(&injected).unwrap();
    let d = admission::mutate_object(
        admission::Kind::Deployment,
        &view,
        NS,
        &snapshot(),
        &settings(),
    );
    let mut out = injected.clone();
    json_patch::patch(&mut out, d.patch.as_ref().expect("a patch")).unwrap();
    assert!(
        !env_of(&out, "containers", 0)
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == SYNC)
    );
    assert!(annotations(&out).get(MANAGED).is_none());
}
