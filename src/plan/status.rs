//! Where every namespace stands: its config source, whether its targets hold the values of the
//! config (compliant) or differ (drifted), the IAM binding it needs and the reconciler's last
//! Event.

use std::collections::BTreeMap;

use serde::Serialize;

use super::compute::{Outcome, config_of, outcome};
use super::state::{LastEvent, LiveObject, LiveState, Scope, Source};
use crate::admission::Kind;
use crate::admission::view::Object;
use crate::config::{ConfigSnapshot, Resolved};
use crate::settings::Settings;

/// Where every namespace with targets stands.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// One entry per namespace, in order.
    pub namespaces: Vec<NamespaceStatus>,
}

/// One namespace.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceStatus {
    /// The namespace.
    pub namespace: String,
    /// Where its config comes from.
    pub source: Source,
    /// The config-hash of the config that applies.
    pub config_hash: Option<String>,
    /// The target ServiceAccount holds the annotation of the config (`None`: no managed one).
    pub service_account_ok: Option<bool>,
    /// Target Deployments holding the config's values.
    pub deployments_compliant: usize,
    /// Target Deployments the config governs.
    pub deployments_total: usize,
    /// The managed targets that differ from the config (`Kind/name`).
    pub drifted: Vec<String>,
    /// The IAM binding the config needs (it cannot be verified from the cluster).
    pub iam_binding: Option<String>,
    /// Why the config that applies is invalid.
    pub problems: Vec<String>,
    /// The reconciler's last Event in the namespace.
    pub last_event: Option<LastEvent>,
}

impl NamespaceStatus {
    /// Do its targets hold their config's values, and is that config valid?
    pub fn ok(&self) -> bool {
        self.drifted.is_empty() && self.problems.is_empty()
    }
}

impl Status {
    /// 1 when a target lacks its values, drifted, or its config is invalid; else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.namespaces.iter().all(NamespaceStatus::ok))
    }
}

/// Where every namespace of `scope` with targets stands.
pub fn status(live: &LiveState, settings: &Settings, scope: &Scope) -> Status {
    let snapshot = live.snapshot(None);
    let mut per_ns: BTreeMap<&str, NamespaceStatus> = BTreeMap::new();
    for obj in live.objects.iter().filter(|o| scope.shows(o.namespace())) {
        let Ok(view) = Object::from_value(&obj.object) else {
            continue;
        };
        let result = outcome(live, obj, &view, &snapshot, settings);
        if matches!(result, Outcome::NotTarget) {
            continue;
        }
        let ns = per_ns
            .entry(obj.namespace())
            .or_insert_with(|| namespace_status(live, obj.namespace(), &snapshot, settings));
        count(ns, obj, &result);
    }
    Status {
        namespaces: per_ns.into_values().collect(),
    }
}

fn count(ns: &mut NamespaceStatus, obj: &LiveObject, result: &Outcome) {
    let Outcome::Managed(patch) = result else {
        return;
    };
    let ok = patch.is_none();
    if !ok {
        ns.drifted
            .push(format!("{}/{}", obj.kind.as_str(), obj.name()));
    }
    match obj.kind {
        Kind::ServiceAccount => ns.service_account_ok = Some(ok),
        _ => {
            ns.deployments_total += 1;
            ns.deployments_compliant += usize::from(ok);
        }
    }
}

fn namespace_status(
    live: &LiveState,
    ns: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> NamespaceStatus {
    let source = live.source(ns, snapshot);
    let config = config_of(live, ns, snapshot);
    let problems = match (source, snapshot.resolve(ns)) {
        (Source::Invalid, Resolved::Broken(p, _)) => p.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    NamespaceStatus {
        namespace: ns.to_owned(),
        source,
        config_hash: config.map(|c| c.hash.clone()),
        service_account_ok: None,
        deployments_compliant: 0,
        deployments_total: 0,
        drifted: Vec::new(),
        iam_binding: config.map(|c| c.iam_binding(ns, &settings.service_account)),
        problems,
        last_event: live.events.get(ns).cloned(),
    }
}
