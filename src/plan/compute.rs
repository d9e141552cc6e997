//! The plan: for every target, the object as the reconciler leaves it under the config in force
//! now and under the config after the change, through the same core; their differences.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::diff::{self, FieldChange};
use super::state::{Change, LiveObject, LiveState, Scope, Source};
use crate::admission::view::Object;
use crate::admission::{Kind, mutate_object, target};
use crate::config::{ConfigEntry, ConfigSnapshot, Resolved, WorkloadIdentityConfig};
use crate::settings::Settings;

/// What applying (or deleting) a ConfigMap would do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Why the new ConfigMap is invalid (the messages of `check`); empty when it is valid.
    pub problems: Vec<String>,
    /// Its warnings (as `check` prints them).
    pub warnings: Vec<String>,
    /// The namespaces the change touches, in order.
    pub namespaces: Vec<NamespacePlan>,
}

/// One namespace the change touches.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacePlan {
    /// The namespace.
    pub namespace: String,
    /// Where its config comes from now.
    pub source_before: Source,
    /// Where it comes from after the change.
    pub source_after: Source,
    /// The objects that would change.
    pub objects: Vec<ObjectChange>,
    /// Targets the change does not reach, and why.
    pub left_alone: Vec<LeftAlone>,
    /// IAM bindings the new config needs that the old one did not (full `gcloud` commands).
    pub iam_bindings: Vec<String>,
}

/// One object that would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    /// `ServiceAccount` or `Deployment`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// A Deployment whose pod template changes: its pods roll.
    pub rolls: bool,
    /// Each env variable and annotation, old → new.
    pub changes: Vec<FieldChange>,
}

/// A target the change leaves as it is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftAlone {
    /// `ServiceAccount` or `Deployment`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Why.
    pub why: String,
}

impl Plan {
    /// Would anything change?
    pub fn changes_anything(&self) -> bool {
        self.namespaces.iter().any(|n| !n.objects.is_empty())
    }

    /// `terraform plan -detailed-exitcode`: 1 invalid, 2 changes, 0 nothing.
    pub fn exit_code(&self) -> u8 {
        if !self.problems.is_empty() {
            1
        } else if self.changes_anything() {
            2
        } else {
            0
        }
    }
}

/// What the core does to one object under one snapshot.
pub(super) enum Outcome {
    /// Not a target at all.
    NotTarget,
    /// A target the reconciler leaves as it is, for this reason.
    LeftAlone(&'static str),
    /// A target brought to its config by this patch (`None`: already there).
    Managed(Option<json_patch::Patch>),
}

/// Run `obj` through the core as the reconciler does.
pub(super) fn outcome(
    live: &LiveState,
    obj: &LiveObject,
    view: &Object<'_>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Outcome {
    let ns = obj.namespace();
    if !target::is_target(obj.kind, obj.name(), view, settings) {
        let ignoring_labels = Settings {
            object_opt_out: false,
            ..settings.clone()
        };
        return if target::is_target(obj.kind, obj.name(), view, &ignoring_labels) {
            Outcome::LeftAlone("opted out by its own label")
        } else {
            Outcome::NotTarget
        };
    }
    match live.source(ns, snapshot) {
        Source::Excluded => Outcome::LeftAlone("its namespace is excluded"),
        Source::OptedOut => Outcome::LeftAlone("its namespace opted out"),
        Source::None => Outcome::LeftAlone("no config applies"),
        Source::Invalid => Outcome::LeftAlone("the config that applies is invalid"),
        Source::Own | Source::Default => {
            Outcome::Managed(mutate_object(obj.kind, view, ns, snapshot, settings).patch)
        }
    }
}

/// The object as the reconciler leaves it under one outcome.
fn settled(obj: &Value, outcome: &Outcome) -> Value {
    let mut v = obj.clone();
    if let Outcome::Managed(Some(p)) = outcome
        && json_patch::patch(&mut v, &p.0).is_err()
    {
        return obj.clone();
    }
    v
}

/// Preview `change` on `live`: the namespaces of `scope` it touches.
pub fn plan(live: &LiveState, change: &Change, settings: &Settings, scope: &Scope) -> Plan {
    let (before, after) = (live.snapshot(None), live.snapshot(Some(change)));
    // None: the change does not reach the namespace (same source, same config), so none of its
    // objects can change and they are not run through the core.
    let mut per_ns: BTreeMap<&str, Option<NamespacePlan>> = BTreeMap::new();
    for obj in live.objects.iter().filter(|o| scope.shows(o.namespace())) {
        let entry = per_ns.entry(obj.namespace()).or_insert_with(|| {
            let n = namespace_plan(live, obj.namespace(), &before, &after, settings);
            let reached = n.source_before != n.source_after
                || config_changed(live, &n.namespace, &before, &after);
            reached.then_some(n)
        });
        let (Some(ns), Ok(view)) = (entry, Object::from_value(&obj.object)) else {
            continue;
        };
        let was = outcome(live, obj, &view, &before, settings);
        let will = outcome(live, obj, &view, &after, settings);
        record(ns, obj, &was, &will);
    }
    let mut namespaces: Vec<NamespacePlan> = per_ns.into_values().flatten().collect();
    for n in &mut namespaces {
        if n.objects.is_empty() && n.source_before == n.source_after {
            n.left_alone.clear();
        }
    }
    let (problems, warnings) = change_problems(change);
    Plan {
        problems,
        warnings,
        namespaces,
    }
}

/// File one object's before/after into its namespace's plan.
fn record(ns: &mut NamespacePlan, obj: &LiveObject, was: &Outcome, will: &Outcome) {
    match will {
        Outcome::NotTarget => {}
        Outcome::LeftAlone(why) => ns.left_alone.push(LeftAlone {
            kind: obj.kind.as_str(),
            name: obj.name().to_owned(),
            why: (*why).to_owned(),
        }),
        Outcome::Managed(_) => {
            let (now, later) = (settled(&obj.object, was), settled(&obj.object, will));
            let changes = diff::changes(&now, &later);
            if !changes.is_empty() {
                ns.objects.push(ObjectChange {
                    kind: obj.kind.as_str(),
                    name: obj.name().to_owned(),
                    rolls: obj.kind == Kind::Deployment && diff::rolls(&now, &later),
                    changes,
                });
            }
        }
    }
}

fn namespace_plan(
    live: &LiveState,
    ns: &str,
    before: &ConfigSnapshot,
    after: &ConfigSnapshot,
    settings: &Settings,
) -> NamespacePlan {
    let has_sa = live.objects.iter().any(|o| {
        o.kind == Kind::ServiceAccount
            && o.namespace() == ns
            && o.name() == settings.service_account
    });
    let binding = |s: &ConfigSnapshot| {
        config_of(live, ns, s).map(|c| c.iam_binding(ns, &settings.service_account))
    };
    let iam_bindings = match (has_sa, binding(before), binding(after)) {
        (true, old, Some(new)) if old.as_ref() != Some(&new) => vec![new],
        _ => Vec::new(),
    };
    NamespacePlan {
        namespace: ns.to_owned(),
        source_before: live.source(ns, before),
        source_after: live.source(ns, after),
        objects: Vec::new(),
        left_alone: Vec::new(),
        iam_bindings,
    }
}

/// The valid config `ns`'s targets get under `snapshot`, if any.
pub(super) fn config_of<'s>(
    live: &LiveState,
    ns: &str,
    snapshot: &'s ConfigSnapshot,
) -> Option<&'s WorkloadIdentityConfig> {
    match (live.source(ns, snapshot), snapshot.resolve(ns)) {
        (Source::Own | Source::Default, Resolved::Config(c, _)) => Some(c),
        _ => None,
    }
}

fn config_changed(
    live: &LiveState,
    ns: &str,
    before: &ConfigSnapshot,
    after: &ConfigSnapshot,
) -> bool {
    config_of(live, ns, before).map(|c| &c.hash) != config_of(live, ns, after).map(|c| &c.hash)
}

/// The new ConfigMap's problems and warnings, worded as `check` words them.
fn change_problems(change: &Change) -> (Vec<String>, Vec<String>) {
    match change {
        Change::Apply {
            entry: ConfigEntry::Invalid(problems),
            ..
        } => (
            problems.iter().map(ToString::to_string).collect(),
            Vec::new(),
        ),
        Change::Apply {
            entry: ConfigEntry::Valid(c),
            ..
        } => (
            Vec::new(),
            c.warnings.iter().map(ToString::to_string).collect(),
        ),
        _ => (Vec::new(), Vec::new()),
    }
}
