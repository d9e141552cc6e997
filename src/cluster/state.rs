//! What the watches have seen, reduced to what admission and the reconciler read: each
//! namespace's ConfigMap (parsed), and which namespaces opted out. Nothing else of the cluster is
//! kept, so memory grows with those ConfigMaps and namespace names only.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use crate::config::{ConfigEntry, ConfigSnapshot, ExtraEnvAllowlist, config_from_object};
use crate::settings::INJECT_LABEL;

/// One `carto-workload-identity` ConfigMap as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenConfigMap {
    /// Its configuration, or the problems that make it unusable.
    pub entry: ConfigEntry,
    /// Its uid (Events refer to it).
    pub uid: String,
    /// Its resourceVersion (an invalid one is reported once per version).
    pub resource_version: String,
}

impl SeenConfigMap {
    /// Parse a ConfigMap from the watch (`allowed`: the pass-through keys it may hold).
    pub fn of(cm: &ConfigMap, allowed: &ExtraEnvAllowlist) -> Self {
        let entry = match serde_json::to_value(cm) {
            Ok(v) => ConfigEntry::from_result(config_from_object(&v, allowed)),
            Err(e) => ConfigEntry::from_result(Err(vec![crate::config::ConfigProblem::Malformed(
                e.to_string(),
            )])),
        };
        Self {
            entry,
            uid: cm.metadata.uid.clone().unwrap_or_default(),
            resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
        }
    }
}

/// What changed, for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The ConfigMap of this namespace appeared, changed or went away.
    ConfigMap(String),
    /// The cluster default (the ConfigMap of the webhook's namespace) appeared, changed or went.
    Default,
    /// This namespace stopped opting out.
    OptedIn(String),
}

/// The watched state. Cheap to clone into an `Arc` after each change.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    own_namespace: String,
    config_maps: BTreeMap<String, SeenConfigMap>,
    opted_out: BTreeMap<String, bool>,
}

impl Watched {
    /// Empty state for a webhook running in `own_namespace`.
    pub fn new(own_namespace: impl Into<String>) -> Self {
        Self {
            own_namespace: own_namespace.into(),
            ..Self::default()
        }
    }

    /// The webhook's namespace (whose ConfigMap is the default).
    pub fn own_namespace(&self) -> &str {
        &self.own_namespace
    }

    /// The ConfigMap seen in `namespace`.
    pub fn config_map(&self, namespace: &str) -> Option<&SeenConfigMap> {
        self.config_maps.get(namespace)
    }

    /// Namespaces that have their own ConfigMap (the default's namespace included).
    pub fn config_map_namespaces(&self) -> impl Iterator<Item = &str> {
        self.config_maps.keys().map(String::as_str)
    }

    /// ConfigMaps by validity: `(valid, invalid)`.
    pub fn config_map_counts(&self) -> (usize, usize) {
        let valid = self
            .config_maps
            .values()
            .filter(|c| matches!(c.entry, ConfigEntry::Valid(_)))
            .count();
        (valid, self.config_maps.len() - valid)
    }

    /// The snapshot admission reads: the default, every other namespace's ConfigMap, opt-outs.
    pub fn snapshot(&self) -> ConfigSnapshot {
        let mut s = ConfigSnapshot::default();
        for (ns, cm) in &self.config_maps {
            if *ns == self.own_namespace {
                s.set_default(Some(cm.entry.clone()));
            } else {
                s.set_namespace(ns.clone(), cm.entry.clone());
            }
        }
        for (ns, out) in &self.opted_out {
            if *out {
                s.set_opted_out(ns.clone(), true);
            }
        }
        s
    }

    fn config_change(&self, namespace: &str) -> Change {
        if namespace == self.own_namespace {
            Change::Default
        } else {
            Change::ConfigMap(namespace.to_owned())
        }
    }

    /// A ConfigMap was added or modified.
    pub fn apply_config_map(&mut self, namespace: &str, seen: SeenConfigMap) -> Option<Change> {
        let before = self.config_maps.insert(namespace.to_owned(), seen);
        let after = &self.config_maps[namespace];
        let changed = before.is_none_or(|b| b.entry != after.entry);
        changed.then(|| self.config_change(namespace))
    }

    /// A ConfigMap was deleted.
    pub fn delete_config_map(&mut self, namespace: &str) -> Option<Change> {
        self.config_maps
            .remove(namespace)
            .map(|_| self.config_change(namespace))
    }

    /// A full list of the ConfigMaps replaced what was known (after a (re)connect).
    pub fn replace_config_maps(&mut self, listed: BTreeMap<String, SeenConfigMap>) -> Vec<Change> {
        let old = std::mem::replace(&mut self.config_maps, listed);
        let mut changes = Vec::new();
        for (ns, seen) in &self.config_maps {
            if old.get(ns).is_none_or(|o| o.entry != seen.entry) {
                changes.push(self.config_change(ns));
            }
        }
        for ns in old.keys().filter(|ns| !self.config_maps.contains_key(*ns)) {
            changes.push(self.config_change(ns));
        }
        changes
    }

    /// A Namespace was added or modified.
    pub fn apply_namespace(&mut self, meta: &ObjectMeta) -> Option<Change> {
        let name = meta.name.clone()?;
        let out = opted_out(meta);
        let was = self.opted_out.insert(name.clone(), out);
        (was == Some(true) && !out).then_some(Change::OptedIn(name))
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, meta: &ObjectMeta) {
        if let Some(name) = &meta.name {
            self.opted_out.remove(name);
        }
    }

    /// A full list of the Namespaces replaced what was known.
    pub fn replace_namespaces(&mut self, listed: Vec<ObjectMeta>) -> Vec<Change> {
        let old = std::mem::take(&mut self.opted_out);
        let mut changes = Vec::new();
        for meta in &listed {
            let Some(name) = &meta.name else { continue };
            let out = opted_out(meta);
            if old.get(name) == Some(&true) && !out {
                changes.push(Change::OptedIn(name.clone()));
            }
            self.opted_out.insert(name.clone(), out);
        }
        changes
    }
}

fn opted_out(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The state shared between the watches (writers) and the reconciler (reader).
pub type SharedWatched = Arc<arc_swap::ArcSwap<Watched>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Resolved;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, rv: &str, email: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "carto-workload-identity", "namespace": ns, "uid": format!("uid-{ns}"), "resourceVersion": rv},
            "data": {
                "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP": "my-project.workflows_temp",
                "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT": "my-project",
                "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL": email,
                "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID": "auth0|abc",
            }
        }))
        .unwrap()
    }

    fn ns(name: &str, opt_out: bool) -> ObjectMeta {
        let mut m = ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        };
        if opt_out {
            m.labels = Some([(INJECT_LABEL.to_owned(), "false".to_owned())].into());
        }
        m
    }

    #[test]
    fn default_and_namespace_configs_resolve_and_report_changes() {
        let mut w = Watched::new("wi-system");
        let a = "carto-bq@my-project.iam.gserviceaccount.com";
        let b = "carto-other@my-project.iam.gserviceaccount.com";
        assert_eq!(
            w.apply_config_map(
                "wi-system",
                SeenConfigMap::of(&cm("wi-system", "1", a), &ExtraEnvAllowlist::none())
            ),
            Some(Change::Default)
        );
        assert_eq!(
            w.apply_config_map(
                "team",
                SeenConfigMap::of(&cm("team", "1", b), &ExtraEnvAllowlist::none())
            ),
            Some(Change::ConfigMap("team".into()))
        );
        // Same content at a new resourceVersion: nothing to reconcile.
        assert_eq!(
            w.apply_config_map(
                "team",
                SeenConfigMap::of(&cm("team", "2", b), &ExtraEnvAllowlist::none())
            ),
            None
        );
        let s = w.snapshot();
        let email = |r: Resolved<'_>| match r {
            Resolved::Config(c, _) => c.service_account_email.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(email(s.resolve("team")), b);
        assert_eq!(email(s.resolve("elsewhere")), a);
        assert_eq!(w.delete_config_map("wi-system"), Some(Change::Default));
        assert_eq!(w.snapshot().resolve("elsewhere"), Resolved::None);
    }

    #[test]
    fn relist_reports_what_changed_while_disconnected() {
        let mut w = Watched::new("wi-system");
        let a = "carto-bq@my-project.iam.gserviceaccount.com";
        w.apply_config_map(
            "gone",
            SeenConfigMap::of(&cm("gone", "1", a), &ExtraEnvAllowlist::none()),
        );
        w.apply_config_map(
            "kept",
            SeenConfigMap::of(&cm("kept", "1", a), &ExtraEnvAllowlist::none()),
        );
        let listed: BTreeMap<_, _> = [
            (
                "kept".to_owned(),
                SeenConfigMap::of(&cm("kept", "5", a), &ExtraEnvAllowlist::none()),
            ),
            (
                "new".to_owned(),
                SeenConfigMap::of(&cm("new", "1", a), &ExtraEnvAllowlist::none()),
            ),
        ]
        .into();
        let mut changes = w.replace_config_maps(listed);
        changes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(
            changes,
            vec![
                Change::ConfigMap("gone".into()),
                Change::ConfigMap("new".into())
            ]
        );
    }

    #[test]
    fn invalid_configmap_is_kept_as_broken() {
        let mut w = Watched::new("wi-system");
        w.apply_config_map(
            "team",
            SeenConfigMap::of(&cm("team", "1", "not-an-email"), &ExtraEnvAllowlist::none()),
        );
        assert!(matches!(w.snapshot().resolve("team"), Resolved::Broken(..)));
        assert_eq!(w.config_map_counts(), (0, 1));
    }

    #[test]
    fn opting_back_in_is_a_change() {
        let mut w = Watched::new("wi-system");
        assert_eq!(w.apply_namespace(&ns("team", true)), None);
        assert!(w.snapshot().is_opted_out("team"));
        assert_eq!(
            w.apply_namespace(&ns("team", false)),
            Some(Change::OptedIn("team".into()))
        );
        assert!(!w.snapshot().is_opted_out("team"));
        w.apply_namespace(&ns("other", true));
        assert_eq!(
            w.replace_namespaces(vec![ns("other", false)]),
            vec![Change::OptedIn("other".into())]
        );
    }
}
