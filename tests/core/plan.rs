//! `plan` and `status` on the real CARTO plain install in three namespaces, with the cluster
//! default in `wi-system`: what each change previews, and that the preview is what the core then
//! does (the objects settled under the new config differ exactly as planned).

use std::sync::Arc;

use carto_wi_webhook::admission::view::Object;
use carto_wi_webhook::admission::{self, Kind};
use carto_wi_webhook::config::{ConfigEntry, ConfigProblem, config_from_object};
use carto_wi_webhook::plan::diff::{self, FieldChange};
use carto_wi_webhook::plan::state::LiveObject;
use carto_wi_webhook::plan::{Change, LiveState, Scope, Source, plan, render, status};
use carto_wi_webhook::settings::Settings;
use serde_json::Value;

use crate::common::*;

const WEBHOOK_NS: &str = "wi-system";
/// The 10 Deployments running as carto-common-backend, and the ServiceAccount.
const TARGETS_PER_NS: usize = 11;

fn plain_install(ns: &str) -> Vec<LiveObject> {
    fixture_objects("carto-plain.yaml")
        .into_iter()
        .filter_map(|mut v| {
            let kind = match v["kind"].as_str()? {
                "ServiceAccount" => Kind::ServiceAccount,
                "Deployment" => Kind::Deployment,
                _ => return None,
            };
            v["metadata"]["namespace"] = Value::String(ns.into());
            Some(LiveObject { kind, object: v })
        })
        .collect()
}

fn entry(pairs: &[(&str, &str)]) -> ConfigEntry {
    ConfigEntry::Valid(Arc::new(config_of(pairs)))
}

fn acme_with_email(email: &str) -> ConfigEntry {
    let mut pairs = acme_env();
    pairs[2].1 = email;
    entry(&pairs)
}

/// carto-a and carto-b on the default, carto-c with its own ConfigMap; every target settled.
fn cluster() -> LiveState {
    let mut live = LiveState {
        webhook_namespace: WEBHOOK_NS.into(),
        ..LiveState::default()
    };
    live.config_maps
        .insert(WEBHOOK_NS.into(), entry(&acme_env()));
    live.config_maps.insert(
        "carto-c".into(),
        acme_with_email("carto-own@acme-c.iam.gserviceaccount.com"),
    );
    for ns in ["carto-a", "carto-b", "carto-c"] {
        live.objects.extend(plain_install(ns));
    }
    settle(&mut live, &Settings::default());
    live
}

/// Every object as the reconciler leaves it under the live config (the core's patch applied).
fn settle(live: &mut LiveState, settings: &Settings) {
    let snapshot = live.snapshot(None);
    for obj in &mut live.objects {
        let ns = obj.namespace().to_owned();
        let patch = {
            let view = Object::from_value(&obj.object).unwrap();
            if !admission::target::is_target(obj.kind, obj.name(), &view, settings) {
                continue;
            }
            admission::mutate_object(obj.kind, &view, &ns, &snapshot, settings).patch
        };
        if let Some(p) = patch {
            obj.object = apply(&obj.object, &p);
        }
    }
}

fn apply_change(live: &LiveState, change: &Change) -> LiveState {
    let mut next = live.clone();
    match change {
        Change::Apply { namespace, entry } => {
            next.config_maps.insert(namespace.clone(), entry.clone());
        }
        Change::Delete { namespace } => {
            next.config_maps.remove(namespace);
        }
        Change::OptOut {
            namespace,
            opted_out,
        } => {
            if *opted_out {
                next.opted_out.insert(namespace.clone());
            } else {
                next.opted_out.remove(namespace);
            }
        }
    }
    settle(&mut next, &Settings::default());
    next
}

/// What really changed between two settled states: (namespace, kind, name, changes).
fn real_changes(
    before: &LiveState,
    after: &LiveState,
) -> Vec<(String, &'static str, String, Vec<FieldChange>)> {
    before
        .objects
        .iter()
        .zip(&after.objects)
        .filter_map(|(b, a)| {
            let c = diff::changes(&b.object, &a.object);
            (!c.is_empty()).then(|| {
                (
                    b.namespace().to_owned(),
                    b.kind.as_str(),
                    b.name().to_owned(),
                    c,
                )
            })
        })
        .collect()
}

fn planned_changes(
    p: &carto_wi_webhook::plan::Plan,
) -> Vec<(String, &'static str, String, Vec<FieldChange>)> {
    let mut out: Vec<_> = p
        .namespaces
        .iter()
        .flat_map(|n| {
            n.objects.iter().map(|o| {
                (
                    n.namespace.clone(),
                    o.kind,
                    o.name.clone(),
                    o.changes.clone(),
                )
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    out
}

/// The plan of `change`, checked against what settling under it really changes.
fn plan_and_prove(live: &LiveState, change: &Change) -> carto_wi_webhook::plan::Plan {
    let p = plan(live, change, &Settings::default(), &Scope::All);
    let mut real = real_changes(live, &apply_change(live, change));
    real.sort_by(|a, b| (&a.0, a.1, &a.2).cmp(&(&b.0, b.1, &b.2)));
    assert_eq!(
        planned_changes(&p),
        real,
        "the plan is what the core then does"
    );
    p
}

fn sources(p: &carto_wi_webhook::plan::Plan) -> Vec<(&str, Source, Source)> {
    p.namespaces
        .iter()
        .map(|n| (n.namespace.as_str(), n.source_before, n.source_after))
        .collect()
}

#[test]
fn editing_the_default_changes_the_namespaces_on_it_and_rolls_their_deployments() {
    let live = cluster();
    let change = Change::Apply {
        namespace: WEBHOOK_NS.into(),
        entry: acme_with_email("carto-new@acme-analytics.iam.gserviceaccount.com"),
    };
    let p = plan_and_prove(&live, &change);
    assert_eq!(
        sources(&p),
        [
            ("carto-a", Source::Default, Source::Default),
            ("carto-b", Source::Default, Source::Default)
        ]
    );
    for ns in &p.namespaces {
        assert_eq!(ns.objects.len(), TARGETS_PER_NS);
        assert_eq!(ns.objects.iter().filter(|o| o.rolls).count(), 10);
        let sa = ns
            .objects
            .iter()
            .find(|o| o.kind == "ServiceAccount")
            .unwrap();
        assert!(sa.changes.contains(&FieldChange::Annotation {
            key: GCP_SA.into(),
            pod_template: false,
            old: Some(EMAIL_V.into()),
            new: Some("carto-new@acme-analytics.iam.gserviceaccount.com".into()),
        }));
        let binding = &ns.iam_bindings[0];
        assert!(
            binding.starts_with("gcloud iam service-accounts add-iam-policy-binding carto-new@acme-analytics.iam.gserviceaccount.com")
                && binding.contains(&format!("[{}/{SA}]", ns.namespace)),
            "{binding}"
        );
    }
    assert_eq!(p.exit_code(), 2);
    let text = render::plan_text(
        &p,
        "ConfigMap wi-system/carto-workload-identity (the cluster default)",
    );
    assert!(text.contains(&format!("~ container import-api: {SA_EMAIL}: \"{EMAIL_V}\" → \"carto-new@acme-analytics.iam.gserviceaccount.com\"")), "{text}");
    assert!(
        text.contains("Plan: 22 object(s) change in 2 namespace(s); 20 Deployment(s) roll."),
        "{text}"
    );
}

#[test]
fn the_same_config_again_changes_nothing() {
    let live = cluster();
    let change = Change::Apply {
        namespace: WEBHOOK_NS.into(),
        entry: entry(&acme_env()),
    };
    let p = plan_and_prove(&live, &change);
    assert!(p.namespaces.is_empty(), "{p:?}");
    assert_eq!(p.exit_code(), 0);
}

#[test]
fn adding_and_removing_a_namespace_override() {
    let live = cluster();
    let add = Change::Apply {
        namespace: "carto-b".into(),
        entry: acme_with_email("carto-bee@acme-b.iam.gserviceaccount.com"),
    };
    let p = plan_and_prove(&live, &add);
    assert_eq!(sources(&p), [("carto-b", Source::Default, Source::Own)]);
    assert_eq!(p.namespaces[0].objects.len(), TARGETS_PER_NS);
    let remove = Change::Delete {
        namespace: "carto-c".into(),
    };
    let p = plan_and_prove(&live, &remove);
    assert_eq!(sources(&p), [("carto-c", Source::Own, Source::Default)]);
    assert_eq!(p.exit_code(), 2);
}

#[test]
fn an_invalid_config_is_reported_as_check_words_it_and_leaves_every_object() {
    let live = cluster();
    let cm = serde_json::json!({"kind": "ConfigMap", "data": {BILLING_PROJECT: "acme-gke-prod"}});
    let problems: Vec<ConfigProblem> = config_from_object(&cm, &Default::default()).unwrap_err();
    let change = Change::Apply {
        namespace: "carto-a".into(),
        entry: ConfigEntry::from_result(Err(problems.clone())),
    };
    let p = plan_and_prove(&live, &change);
    let expected: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(p.problems, expected);
    assert_eq!(sources(&p), [("carto-a", Source::Default, Source::Invalid)]);
    let ns = &p.namespaces[0];
    assert_eq!(ns.left_alone.len(), TARGETS_PER_NS);
    assert!(
        ns.left_alone
            .iter()
            .all(|l| l.why == "the config that applies is invalid")
    );
    assert_eq!(p.exit_code(), 1);
}

#[test]
fn an_opt_out_label_leaves_the_namespace_as_it_is() {
    let live = cluster();
    let change = Change::OptOut {
        namespace: "carto-a".into(),
        opted_out: true,
    };
    let p = plan_and_prove(&live, &change);
    assert_eq!(
        sources(&p),
        [("carto-a", Source::Default, Source::OptedOut)]
    );
    assert!(p.namespaces[0].objects.is_empty());
    assert!(
        p.namespaces[0]
            .left_alone
            .iter()
            .all(|l| l.why == "its namespace opted out")
    );
    assert_eq!(p.exit_code(), 0);
}

#[test]
fn a_first_default_reaches_unconfigured_namespaces_and_not_excluded_ones() {
    let mut live = cluster();
    live.config_maps.remove(WEBHOOK_NS);
    live.excluded.insert("carto-b".into());
    let change = Change::Apply {
        namespace: WEBHOOK_NS.into(),
        entry: entry(&acme_env()),
    };
    let p = plan(&live, &change, &Settings::default(), &Scope::All);
    assert_eq!(sources(&p), [("carto-a", Source::None, Source::Default)]);
    // carto-a was settled under the old default: plan says nothing changes in its objects.
    assert!(p.namespaces[0].objects.is_empty());
    let only_b = plan(
        &live,
        &change,
        &Settings::default(),
        &Scope::Only("carto-b".into()),
    );
    assert!(only_b.namespaces.is_empty());
}

#[test]
fn status_counts_compliant_and_drifted_targets() {
    let mut live = cluster();
    let s = status(&live, &Settings::default(), &Scope::All);
    assert_eq!(s.exit_code(), 0);
    let a = &s.namespaces[0];
    assert_eq!(
        (
            a.service_account_ok,
            a.deployments_compliant,
            a.deployments_total
        ),
        (Some(true), 10, 10)
    );
    assert_eq!(a.source, Source::Default);
    // Someone edits an env value by hand in carto-b.
    let d = live
        .objects
        .iter_mut()
        .find(|o| o.namespace() == "carto-b" && o.name() == "carto-maps-api")
        .unwrap();
    d.object["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .retain(|e| e["name"] != SA_EMAIL);
    live.config_maps
        .insert("carto-c".into(), ConfigEntry::Invalid(Arc::new(vec![])));
    let s = status(&live, &Settings::default(), &Scope::All);
    assert_eq!(s.exit_code(), 1);
    assert_eq!(s.namespaces[1].drifted, ["Deployment/carto-maps-api"]);
    assert_eq!(s.namespaces[1].deployments_compliant, 9);
    assert_eq!(s.namespaces[2].source, Source::Invalid);
    let text = render::status_text(&s);
    assert!(
        text.contains("drifted: Deployment/carto-maps-api"),
        "{text}"
    );
    assert!(text.contains("carto-b    default  ✓   9/10"), "{text}");
}
