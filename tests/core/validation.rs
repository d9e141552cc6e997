//! Validation: the ConfigMap, target Deployments and the ServiceAccount, the enforcement modes,
//! `--require-config`, and the warning limits.

use carto_wi_webhook::admission::{self, Found, Violation, Webhook};
use carto_wi_webhook::config::{
    ConfigEntry, ConfigOrigin, ConfigProblem, ConfigSnapshot, Rule, WorkloadIdentityConfig, keys,
};
use carto_wi_webhook::settings::{Enforcement, Settings};
use serde_json::{Value, json};

use crate::common::*;

fn validate(obj: &Value) -> admission::Decision {
    admission::review(Webhook::Validate, &req(obj), &snapshot(), &settings())
}

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "carto-workload-identity", "namespace": NS}, "data": data})
}

fn acme_data_json() -> Value {
    json!({WORKFLOWS_TEMP: TEMP_V, BILLING_PROJECT: BILLING_V, SA_EMAIL: EMAIL_V, OWNER_ID: OWNER_V})
}

fn denial_text(d: &admission::Decision) -> String {
    d.denial.as_ref().expect("denied").to_string()
}

// ---------------------------------------------------------------- ConfigMap

#[test]
fn valid_config_map_is_allowed_with_its_warnings() {
    let d = validate(&config_map(acme_data_json()));
    assert!(d.allowed());
    assert!(d.violations.is_empty());
    // No GKE_CLUSTER_PROJECT: the assumption is pointed out.
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].contains("GKE_CLUSTER_PROJECT"),
        "{}",
        d.warnings[0]
    );
    let mut data = acme_data_json();
    data[GKE_PROJECT] = json!("acme-gke-prod");
    let d = validate(&config_map(data));
    assert!(d.allowed() && d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn invalid_config_map_is_denied_listing_every_problem() {
    let objs = fixture_objects("configmap-invalid.yaml");
    let d = admission::review(Webhook::Validate, &req(&objs[0]), &snapshot(), &settings());
    assert!(!d.allowed());
    let want = vec![
        Violation::Config(ConfigProblem::UnknownKey {
            key: "GKE_CLUSTER_PROJET".into(),
            suggestion: Some(GKE_PROJECT.into()),
        }),
        Violation::Config(ConfigProblem::Invalid {
            key: BILLING_PROJECT.into(),
            value: " acme-gke-prod".into(),
            rule: Rule::NoSurroundingWhitespace,
            example: keys::example(BILLING_PROJECT),
        }),
        Violation::Config(ConfigProblem::Invalid {
            key: SA_EMAIL.into(),
            value: "carto-wi@acme-analytics.iam.gserviceaccount".into(),
            rule: Rule::ServiceAccountEmail,
            example: keys::example(SA_EMAIL),
        }),
        Violation::Config(ConfigProblem::Missing {
            key: keys::CONNECTION_OWNER_ID,
            example: keys::example(keys::CONNECTION_OWNER_ID),
        }),
    ];
    assert_eq!(d.violations, want);
    assert_eq!(d.denial.as_ref().unwrap().violations, want);
    let text = denial_text(&d);
    assert!(text.starts_with("ConfigMap carto/carto-workload-identity breaks the Workload Identity policy (4 problems):"), "{text}");
    for v in &want {
        assert!(text.contains(&format!("\n- {v}")), "{text}");
    }
    assert!(text.contains("did you mean GKE_CLUSTER_PROJECT?"), "{text}");
}

#[test]
fn config_map_deny_applies_in_any_namespace_and_only_to_its_name() {
    let mut cm = config_map(json!({}));
    cm["metadata"]["namespace"] = json!("team-a");
    assert!(!validate(&cm).allowed());
    cm["metadata"]["name"] = json!("something-else");
    let d = validate(&cm);
    assert!(d.allowed() && d.violations.is_empty() && d.warnings.is_empty());
    // A renamed config map (--config-map) is the one checked.
    let s = Settings {
        config_map: "something-else".into(),
        ..settings()
    };
    assert!(!admission::review(Webhook::Validate, &req(&cm), &snapshot(), &s).allowed());
}

#[test]
fn config_map_with_unquoted_values_is_denied() {
    let mut data = acme_data_json();
    data["WORKSPACE_SYNC_DATA_ENABLED"] = json!(true);
    let d = validate(&config_map(data));
    assert_eq!(
        d.violations,
        vec![Violation::Config(ConfigProblem::NotAString {
            key: "WORKSPACE_SYNC_DATA_ENABLED".into()
        })]
    );
}

#[test]
fn config_map_delete_is_allowed() {
    let r = raw_req(
        "DELETE",
        "",
        "ConfigMap",
        "configmaps",
        None,
        "carto-workload-identity",
        Value::Null,
    );
    assert!(admission::review(Webhook::Validate, &r, &snapshot(), &settings()).allowed());
}

// ---------------------------------------------------------------- Deployment

fn dep_with_env(env: Value) -> Value {
    deployment(
        "carto-workspace-api",
        SA,
        vec![container("workspace-api", Some(env))],
    )
}

#[test]
fn correct_deployment_is_allowed() {
    let d = validate(&dep_with_env(json!(acme_entries())));
    assert!(
        d.allowed() && d.violations.is_empty() && d.warnings.is_empty(),
        "{d:?}"
    );
}

#[test]
fn partial_set_is_incomplete() {
    let env = json!([env_var(WORKFLOWS_TEMP, TEMP_V), env_var(SA_EMAIL, EMAIL_V)]);
    let d = validate(&dep_with_env(env));
    assert_eq!(
        d.violations,
        vec![Violation::IncompleteEnv {
            container: "workspace-api".into(),
            missing: vec![keys::BILLING_PROJECT, keys::CONNECTION_OWNER_ID],
        }]
    );
    let text = denial_text(&d);
    assert!(
        text.contains(BILLING_PROJECT) && text.contains(OWNER_ID),
        "{text}"
    );
}

#[test]
fn an_env_that_is_not_a_list_is_named_as_such() {
    for env in [json!({}), json!("A=b"), json!(3)] {
        let d = validate(&dep_with_env(env.clone()));
        assert!(!d.allowed(), "{env}");
        assert_eq!(
            d.violations,
            vec![Violation::EnvNotAList {
                container: "workspace-api".into()
            }],
            "{env}"
        );
        let denial = d.denial.as_ref().unwrap().to_string();
        assert!(denial.contains("env that is not a list"), "{denial}");
    }
    // `null` is an empty env: the variables are simply not there.
    let d = validate(&dep_with_env(Value::Null));
    assert_eq!(
        d.violations,
        vec![Violation::NotInjected {
            container: "workspace-api".into()
        }]
    );
}

#[test]
fn no_variables_at_all_with_a_config_is_denied_as_not_injected() {
    let d = validate(&dep_with_env(json!([{"name": "A", "value": "b"}])));
    assert!(!d.allowed());
    assert_eq!(
        d.violations,
        vec![Violation::NotInjected {
            container: "workspace-api".into()
        }]
    );
    assert!(
        d.denial
            .as_ref()
            .unwrap()
            .to_string()
            .contains("mutating webhook"),
        "{:?}",
        d.denial
    );
}

#[test]
fn invalid_value_is_denied() {
    let mut env = acme_entries();
    env[1] = env_var(BILLING_PROJECT, "Acme_Billing");
    let d = validate(&dep_with_env(json!(env)));
    assert_eq!(
        d.violations,
        vec![Violation::InvalidEnv {
            container: "workspace-api".into(),
            name: BILLING_PROJECT.into(),
            value: "Acme_Billing".into(),
            rule: Rule::ProjectId,
        }]
    );
}

#[test]
fn literal_drift_is_denied() {
    let mut env = acme_entries();
    env[2] = env_var(SA_EMAIL, "other-sa@acme-analytics.iam.gserviceaccount.com");
    let d = validate(&dep_with_env(json!(env)));
    assert_eq!(
        d.violations,
        vec![Violation::EnvDrift {
            container: "workspace-api".into(),
            name: SA_EMAIL.into(),
            found: Found::Value("other-sa@acme-analytics.iam.gserviceaccount.com".into()),
            expected: EMAIL_V.into(),
            origin: ConfigOrigin::Default,
        }]
    );
    assert!(
        denial_text(&d).contains("cluster default"),
        "{}",
        denial_text(&d)
    );
}

#[test]
fn value_from_drift_is_denied() {
    let mut env = acme_entries();
    env[3] =
        json!({"name": OWNER_ID, "valueFrom": {"secretKeyRef": {"name": "s", "key": "owner"}}});
    let d = validate(&dep_with_env(json!(env)));
    assert_eq!(
        d.violations,
        vec![Violation::EnvDrift {
            container: "workspace-api".into(),
            name: OWNER_ID.into(),
            found: Found::ValueFrom,
            expected: OWNER_V.into(),
            origin: ConfigOrigin::Default,
        }]
    );
}

#[test]
fn drift_against_the_namespace_config() {
    let mut snap = snapshot();
    let team = config_of(&[
        (WORKFLOWS_TEMP, TEMP_V),
        (BILLING_PROJECT, "team-billing"),
        (SA_EMAIL, EMAIL_V),
        (OWNER_ID, OWNER_V),
    ]);
    snap.set_namespace(NS, ConfigEntry::from_result(Ok(team)));
    // Right for the default, wrong for the namespace: the namespace wins.
    let d = admission::review(
        Webhook::Validate,
        &req(&dep_with_env(json!(acme_entries()))),
        &snap,
        &settings(),
    );
    assert!(
        matches!(
            &d.violations[..],
            [Violation::EnvDrift { origin: ConfigOrigin::Namespace, expected, .. }] if expected == "team-billing"
        ),
        "{:?}",
        d.violations
    );
}

#[test]
fn duplicate_with_a_stale_value_is_drift() {
    let mut env = acme_entries();
    env.push(env_var(BILLING_PROJECT, "acme-gke-old"));
    let d = validate(&dep_with_env(json!(env)));
    assert_eq!(d.violations.len(), 1, "{:?}", d.violations);
}

#[test]
fn skipped_and_init_containers_are_not_checked_unless_managed() {
    let mut dep = deployment(
        "x",
        SA,
        vec![
            container("app", Some(json!(acme_entries()))),
            container(
                "sidecar",
                Some(json!([env_var(BILLING_PROJECT, "whatever-else")])),
            ),
        ],
    );
    dep["spec"]["template"]["spec"]["initContainers"] = json!([container(
        "init",
        Some(json!([env_var(BILLING_PROJECT, "x")]))
    )]);
    dep["metadata"]["annotations"] = json!({SKIP: "sidecar"});
    // Without --object-opt-out the skip list is ignored: the sidecar is checked.
    assert!(!validate(&dep).allowed());
    let d = admission::review(
        Webhook::Validate,
        &req(&dep),
        &snapshot(),
        &object_opt_out(),
    );
    assert!(d.allowed() && d.violations.is_empty(), "{:?}", d.violations);
    let s = Settings {
        include_init_containers: true,
        ..object_opt_out()
    };
    let d = admission::review(Webhook::Validate, &req(&dep), &snapshot(), &s);
    assert!(
        matches!(&d.violations[..], [Violation::IncompleteEnv { container, .. }, ..] if container == "init"),
        "{:?}",
        d.violations
    );
}

#[test]
fn non_target_deployments_are_not_checked() {
    let mut env = acme_entries();
    env[0] = env_var(WORKFLOWS_TEMP, "bad");
    let dep = deployment(
        "carto-notifier",
        "carto-notifier",
        vec![container("n", Some(json!(env.clone())))],
    );
    assert!(validate(&dep).violations.is_empty());
    let mut opted = dep_with_env(json!(env));
    opted["metadata"]["labels"] = json!({INJECT: "false"});
    let d = admission::review(
        Webhook::Validate,
        &req(&opted),
        &snapshot(),
        &object_opt_out(),
    );
    assert!(d.allowed() && d.violations.is_empty());
    // Without --object-opt-out the label does not exempt it.
    assert!(!validate(&opted).allowed());
    let s = Settings {
        deployments: vec!["only-this".into()],
        ..settings()
    };
    assert!(
        admission::review(Webhook::Validate, &req(&opted), &snapshot(), &s)
            .violations
            .is_empty()
    );
}

// ---------------------------------------------------------------- no config

#[test]
fn no_config_allows_with_a_warning() {
    let snap = ConfigSnapshot::default();
    let d = admission::review(
        Webhook::Validate,
        &req(&dep_with_env(json!(acme_entries()))),
        &snap,
        &settings(),
    );
    assert!(d.allowed());
    assert!(d.violations.is_empty());
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert!(
        d.warnings[0].contains("no carto-workload-identity ConfigMap"),
        "{}",
        d.warnings[0]
    );
    // Values are still checked against the rules without a config.
    let mut env = acme_entries();
    env[0] = env_var(WORKFLOWS_TEMP, "no-dataset");
    let d = admission::review(
        Webhook::Validate,
        &req(&dep_with_env(json!(env))),
        &snap,
        &settings(),
    );
    assert!(
        matches!(
            &d.violations[..],
            [Violation::InvalidEnv {
                rule: Rule::DatasetRef,
                ..
            }]
        ),
        "{:?}",
        d.violations
    );
}

#[test]
fn no_config_with_require_config_denies() {
    let snap = ConfigSnapshot::default();
    let s = Settings {
        require_config: true,
        ..settings()
    };
    for o in [
        dep_with_env(json!(acme_entries())),
        service_account(SA, Some(json!({GCP_SA: EMAIL_V}))),
    ] {
        let d = admission::review(Webhook::Validate, &req(&o), &snap, &s);
        assert!(!d.allowed());
        assert_eq!(
            d.violations,
            vec![Violation::NoConfig {
                config_map: "carto-workload-identity".into(),
                namespace: NS.into()
            }]
        );
        assert!(denial_text(&d).contains("--require-config"));
    }
    // Non-targets never need a config.
    assert!(
        admission::review(
            Webhook::Validate,
            &req(&service_account("default", None)),
            &snap,
            &s
        )
        .allowed()
    );
}

#[test]
fn broken_config_warns_or_denies_with_require_config() {
    let broken = WorkloadIdentityConfig::from_data(&data(&[(BILLING_PROJECT, "X")]), &allowed());
    let snap = ConfigSnapshot::with_default(ConfigEntry::from_result(broken));
    let dep = dep_with_env(json!(acme_entries()));
    let d = admission::review(Webhook::Validate, &req(&dep), &snap, &settings());
    assert!(d.allowed());
    assert!(
        d.warnings.iter().any(|w| w.contains("invalid")),
        "{:?}",
        d.warnings
    );
    let s = Settings {
        require_config: true,
        ..settings()
    };
    let d = admission::review(Webhook::Validate, &req(&dep), &snap, &s);
    assert!(
        matches!(
            &d.violations[..],
            [Violation::BrokenConfig { problems: 4, .. }]
        ),
        "{:?}",
        d.violations
    );
}

// ---------------------------------------------------------------- ServiceAccount

#[test]
fn service_account_checks() {
    let ok = validate(&service_account(SA, Some(json!({GCP_SA: EMAIL_V}))));
    assert!(ok.allowed() && ok.violations.is_empty());
    for ann in [
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!({"other": "x"})),
    ] {
        let d = validate(&service_account(SA, ann.clone()));
        assert_eq!(
            d.violations,
            vec![Violation::AnnotationMissing {
                expected: EMAIL_V.into()
            }],
            "{ann:?}"
        );
    }
    let d = validate(&service_account(SA, Some(json!({GCP_SA: "not-an-email"}))));
    assert_eq!(
        d.violations,
        vec![Violation::AnnotationInvalid {
            value: "not-an-email".into()
        }]
    );
    let other = "other-sa@acme-analytics.iam.gserviceaccount.com";
    let d = validate(&service_account(SA, Some(json!({GCP_SA: other}))));
    assert_eq!(
        d.violations,
        vec![Violation::AnnotationDrift {
            found: other.into(),
            expected: EMAIL_V.into(),
            origin: ConfigOrigin::Default
        }]
    );
    // Without a config only an invalid annotation is a problem.
    let snap = ConfigSnapshot::default();
    let d = admission::review(
        Webhook::Validate,
        &req(&service_account(SA, None)),
        &snap,
        &settings(),
    );
    assert!(d.violations.is_empty());
    let d = admission::review(
        Webhook::Validate,
        &req(&service_account(SA, Some(json!({GCP_SA: "bad"})))),
        &snap,
        &settings(),
    );
    assert_eq!(
        d.violations,
        vec![Violation::AnnotationInvalid {
            value: "bad".into()
        }]
    );
    // Another ServiceAccount is not checked.
    assert!(
        validate(&service_account("carto-notifier", None))
            .violations
            .is_empty()
    );
}

// ---------------------------------------------------------------- enforcement and messages

fn bad_deployment() -> Value {
    let env = json!([
        env_var(WORKFLOWS_TEMP, "other-project.temp"),
        env_var(BILLING_PROJECT, "Bad Project"),
        env_var(SA_EMAIL, EMAIL_V),
    ]);
    dep_with_env(env)
}

#[test]
fn enforcement_deny_warn_audit() {
    let with = |e: Enforcement| {
        admission::review(
            Webhook::Validate,
            &req(&bad_deployment()),
            &snapshot(),
            &Settings {
                enforcement: e,
                ..settings()
            },
        )
    };
    let deny = with(Enforcement::Deny);
    let warn = with(Enforcement::Warn);
    let audit = with(Enforcement::Audit);
    // Three problems: incomplete, invalid, drift.
    assert_eq!(deny.violations.len(), 3, "{:?}", deny.violations);
    assert_eq!(deny.violations, warn.violations);
    assert_eq!(deny.violations, audit.violations);

    assert!(!deny.allowed());
    assert_eq!(deny.outcome(), "denied");
    assert!(deny.audit_annotations.is_empty());
    assert!(deny.warnings.is_empty(), "{:?}", deny.warnings);

    assert!(warn.allowed());
    assert_eq!(warn.outcome(), "violations");
    assert_eq!(warn.warnings.len(), 3);
    for (w, v) in warn.warnings.iter().zip(&warn.violations) {
        // The violation text, cut to the 256-character limit when longer.
        let full = v.to_string();
        let keep: String = full.chars().take(200).collect();
        assert!(w.starts_with(&keep), "{w}");
        assert!(w.chars().count() <= 256);
    }
    assert!(warn.audit_annotations.is_empty());

    assert!(audit.allowed());
    assert!(audit.warnings.is_empty(), "{:?}", audit.warnings);
    let a = &audit.audit_annotations["violations"];
    for v in &audit.violations {
        assert!(a.contains(&v.to_string()), "{a}");
    }
}

#[test]
fn denial_lists_every_problem() {
    let d = validate(&bad_deployment());
    let text = denial_text(&d);
    assert!(
        text.starts_with(
            "Deployment carto/carto-workspace-api breaks the Workload Identity policy (3 problems):"
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.contains(OWNER_ID), "{text}");
    assert!(text.contains("\"Bad Project\""), "{text}");
    assert!(text.contains("\"other-project.temp\""), "{text}");
}

#[test]
fn warnings_are_capped_in_number_and_length() {
    // 15 containers with a long stale value each: 15 replacement warnings from mutation and,
    // under `warn`, 15+ violations from validation.
    let long = format!("acme-analytics.{}", "x".repeat(400));
    let containers: Vec<Value> = (0..15)
        .map(|i| {
            container(
                &format!("c{i}-{}", "n".repeat(200)),
                Some(json!([env_var(WORKFLOWS_TEMP, &long)])),
            )
        })
        .collect();
    let dep = deployment("many", SA, containers);
    let (_, m) = mutate_default(&dep);
    let s = Settings {
        enforcement: Enforcement::Warn,
        ..settings()
    };
    let v = admission::review(Webhook::Validate, &req(&dep), &snapshot(), &s);
    assert_eq!(m.warnings.len(), 10, "{:?}", m.warnings);
    assert!(m.warnings[9].contains("more"), "{}", m.warnings[9]);
    // Over 20 violations, the same problem in many containers is grouped: one warning each.
    assert_eq!(v.violation_count(), 30, "{:?}", v.violations);
    assert_eq!(v.warnings.len(), 2, "{:?}", v.warnings);
    assert!(
        v.warnings
            .iter()
            .all(|w| w.starts_with("[15 times, in 15 containers] container \"c0-nnn")),
        "{:?}",
        v.warnings
    );
    for d in [&m, &v] {
        assert!(
            d.warnings.iter().all(|w| w.chars().count() <= 256),
            "{:?}",
            d.warnings
        );
        assert!(d.warnings.iter().all(|w| !w.contains('\n')));
    }
    // Values are shortened in messages so the point survives the cut.
    assert!(m.warnings[0].chars().count() <= 256);
    assert!(m.warnings[0].contains("…\""), "{}", m.warnings[0]);
}

#[test]
fn delete_connect_and_null_objects_are_allowed() {
    for (op, obj) in [
        ("DELETE", Value::Null),
        ("CONNECT", Value::Null),
        ("CREATE", Value::Null),
        ("DELETE", bad_deployment()),
    ] {
        let r = raw_req(op, "apps", "Deployment", "deployments", None, "x", obj);
        let d = admission::review(Webhook::Validate, &r, &snapshot(), &settings());
        assert!(d.allowed() && d.violations.is_empty(), "{op}");
    }
    let r = raw_req(
        "UPDATE",
        "apps",
        "Deployment",
        "deployments",
        Some("scale"),
        "x",
        bad_deployment(),
    );
    assert!(admission::review(Webhook::Validate, &r, &snapshot(), &settings()).allowed());
}

#[test]
fn denied_wire_response_has_status_403() {
    use carto_wi_webhook::admission::wire::ReviewResponse;
    let d = validate(&bad_deployment());
    let w = serde_json::to_value(ReviewResponse::from_decision("u".into(), &d)).unwrap();
    assert_eq!(w["response"]["allowed"], false);
    assert_eq!(w["response"]["status"]["code"], 403);
    assert_eq!(w["response"]["status"]["message"], denial_text(&d));
    let audit = admission::review(
        Webhook::Validate,
        &req(&bad_deployment()),
        &snapshot(),
        &Settings {
            enforcement: Enforcement::Audit,
            ..settings()
        },
    );
    let w = serde_json::to_value(ReviewResponse::from_decision("u".into(), &audit)).unwrap();
    assert_eq!(w["response"]["allowed"], true);
    assert!(w["response"]["auditAnnotations"]["violations"].is_string());
}

#[test]
fn objects_being_deleted_are_never_denied() {
    // Otherwise removing a finalizer from a drifted Deployment or an invalid ConfigMap would
    // be denied and the deletion would hang.
    let terminating = |mut o: Value| {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        o["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
        o
    };
    for o in [
        terminating(bad_deployment()),
        terminating(config_map(json!({}))),
        terminating(service_account(SA, None)),
    ] {
        let d = validate(&o);
        assert!(d.allowed() && d.violations.is_empty(), "{o}");
        // The same objects, not terminating, are denied.
        let mut live = o.clone();
        live["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("deletionTimestamp");
        assert!(!validate(&live).allowed(), "{live}");
    }
}
