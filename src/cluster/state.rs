//! What the watches have seen, reduced to what admission and the reconciler read: the one
//! [`ConfigSnapshot`] (each namespace's ConfigMap, parsed and versioned, and which namespaces
//! opted out), edited in place event by event. Nothing else of the cluster is kept, so memory
//! grows with those ConfigMaps and namespace names only.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use crate::admission::target;
use crate::config::{
    ConfigEntry, ConfigMapShape, ConfigSnapshot, DataShape, ExtraEnvAllowlist, SeenConfigMap,
    SharedMap, WorkloadIdentityConfig,
};

/// Parse a ConfigMap from the watch (`allowed`: the pass-through keys it may hold). Its typed
/// `data` fills the configuration in place; only one with `binaryData` goes through the shape
/// checks, which report those keys.
pub fn seen_config_map(cm: &ConfigMap, allowed: &ExtraEnvAllowlist) -> SeenConfigMap {
    let has_binary = cm.binary_data.as_ref().is_some_and(|b| !b.is_empty());
    let config = match &cm.data {
        Some(data) if !has_binary => WorkloadIdentityConfig::from_data(data, allowed),
        None if !has_binary => WorkloadIdentityConfig::from_data(&BTreeMap::new(), allowed),
        _ => shape_of(cm).config(allowed),
    };
    SeenConfigMap {
        entry: ConfigEntry::from_result(config),
        uid: cm.metadata.uid.clone().unwrap_or_default(),
        resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
    }
}

fn shape_of(cm: &ConfigMap) -> ConfigMapShape<'_> {
    ConfigMapShape {
        kind: None,
        data: match &cm.data {
            None => DataShape::Absent,
            Some(d) => DataShape::Entries(
                d.iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                    .collect(),
            ),
        },
        binary_keys: cm
            .binary_data
            .iter()
            .flat_map(|b| b.keys().map(String::as_str))
            .collect(),
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

/// The snapshot as the watches edit it: each edit says what the reconciler must revisit.
#[derive(Debug, Clone, Default)]
pub struct WatchState {
    own_namespace: String,
    snapshot: ConfigSnapshot,
}

impl WatchState {
    /// Empty state for a webhook running in `own_namespace`.
    pub fn new(own_namespace: impl Into<String>) -> Self {
        Self {
            own_namespace: own_namespace.into(),
            snapshot: ConfigSnapshot::default(),
        }
    }

    /// The snapshot as it stands (O(1) to clone and publish).
    pub fn snapshot(&self) -> &ConfigSnapshot {
        &self.snapshot
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
        let entry = seen.entry.clone();
        let before = if namespace == self.own_namespace {
            self.snapshot.put_default(Some(seen))
        } else {
            self.snapshot.put_namespace(namespace.to_owned(), seen)
        };
        let changed = before.is_none_or(|b| b.entry != entry);
        changed.then(|| self.config_change(namespace))
    }

    /// A ConfigMap was deleted.
    pub fn delete_config_map(&mut self, namespace: &str) -> Option<Change> {
        let before = if namespace == self.own_namespace {
            self.snapshot.put_default(None)
        } else {
            self.snapshot.remove_namespace(namespace)
        };
        before.map(|_| self.config_change(namespace))
    }

    /// A full list of the ConfigMaps replaced what was known (after a (re)connect).
    pub fn replace_config_maps(
        &mut self,
        mut listed: BTreeMap<String, SeenConfigMap>,
    ) -> Vec<Change> {
        let mut changes: Vec<Change> = listed
            .iter()
            .filter(|(ns, seen)| self.seen(ns).is_none_or(|o| o.entry != seen.entry))
            .map(|(ns, _)| self.config_change(ns))
            .collect();
        let mut gone: Vec<&str> = self.snapshot.namespaces().collect();
        if self.snapshot.seen_default().is_some() {
            gone.push(&self.own_namespace);
        }
        gone.retain(|ns| !listed.contains_key(*ns));
        gone.sort_unstable();
        changes.extend(gone.into_iter().map(|ns| self.config_change(ns)));
        self.snapshot
            .put_default(listed.remove(&self.own_namespace));
        let listed = listed.into_iter().map(|(ns, s)| (ns, Arc::new(s)));
        self.snapshot.replace_namespaces(listed.collect());
        changes
    }

    fn seen(&self, namespace: &str) -> Option<&SeenConfigMap> {
        if namespace == self.own_namespace {
            self.snapshot.seen_default()
        } else {
            self.snapshot.seen_namespace(namespace)
        }
    }

    /// A Namespace was added or modified.
    pub fn apply_namespace(&mut self, meta: &ObjectMeta) -> Option<Change> {
        let name = meta.name.clone()?;
        let out = namespace_opted_out(meta);
        let was = self.snapshot.set_opted_out(name.clone(), out);
        (was && !out).then_some(Change::OptedIn(name))
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, meta: &ObjectMeta) {
        if let Some(name) = &meta.name {
            self.snapshot.set_opted_out(name.clone(), false);
        }
    }

    /// A full list of the Namespaces replaced what was known.
    pub fn replace_namespaces(&mut self, listed: Vec<ObjectMeta>) -> Vec<Change> {
        let mut out = SharedMap::default();
        let mut opted_in = Vec::new();
        for meta in &listed {
            let Some(name) = &meta.name else { continue };
            if namespace_opted_out(meta) {
                out.insert(name.clone(), ());
            } else {
                opted_in.push(name);
            }
        }
        let old = self.snapshot.replace_opted_out(out);
        opted_in
            .into_iter()
            .filter(|name| old.contains_key(name))
            .map(|name| Change::OptedIn(name.clone()))
            .collect()
    }
}

/// Does the Namespace carry the opt-out label? The same predicate as an object's.
fn namespace_opted_out(meta: &ObjectMeta) -> bool {
    target::labels_opt_out(meta.labels.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigOrigin, Resolved};
    use crate::settings::INJECT_LABEL;
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
        let mut w = WatchState::new("wi-system");
        let a = "carto-bq@my-project.iam.gserviceaccount.com";
        let b = "carto-other@my-project.iam.gserviceaccount.com";
        assert_eq!(
            w.apply_config_map(
                "wi-system",
                seen_config_map(&cm("wi-system", "1", a), &ExtraEnvAllowlist::none())
            ),
            Some(Change::Default)
        );
        assert_eq!(
            w.apply_config_map(
                "team",
                seen_config_map(&cm("team", "1", b), &ExtraEnvAllowlist::none())
            ),
            Some(Change::ConfigMap("team".into()))
        );
        // Same content at a new resourceVersion: nothing to reconcile.
        assert_eq!(
            w.apply_config_map(
                "team",
                seen_config_map(&cm("team", "2", b), &ExtraEnvAllowlist::none())
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
        let mut w = WatchState::new("wi-system");
        let a = "carto-bq@my-project.iam.gserviceaccount.com";
        w.apply_config_map(
            "gone",
            seen_config_map(&cm("gone", "1", a), &ExtraEnvAllowlist::none()),
        );
        w.apply_config_map(
            "kept",
            seen_config_map(&cm("kept", "1", a), &ExtraEnvAllowlist::none()),
        );
        let listed: BTreeMap<_, _> = [
            (
                "kept".to_owned(),
                seen_config_map(&cm("kept", "5", a), &ExtraEnvAllowlist::none()),
            ),
            (
                "new".to_owned(),
                seen_config_map(&cm("new", "1", a), &ExtraEnvAllowlist::none()),
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
        let mut w = WatchState::new("wi-system");
        w.apply_config_map(
            "team",
            seen_config_map(&cm("team", "1", "not-an-email"), &ExtraEnvAllowlist::none()),
        );
        assert!(matches!(w.snapshot().resolve("team"), Resolved::Broken(..)));
        assert_eq!(w.snapshot().config_map_counts(), (0, 1));
    }

    #[test]
    fn opting_back_in_is_a_change() {
        let mut w = WatchState::new("wi-system");
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

    #[test]
    fn typed_data_reads_as_the_shape_checks_do() {
        let allowed = ExtraEnvAllowlist::none();
        let mut with_binary = cm("team", "1", "carto-bq@my-project.iam.gserviceaccount.com");
        with_binary.binary_data = Some([("blob".to_owned(), Default::default())].into());
        let mut empty = cm("team", "1", "x");
        empty.data = None;
        let broken = cm("team", "1", "not-an-email");
        for c in [
            with_binary,
            empty,
            broken,
            cm("team", "1", "a@b.iam.gserviceaccount.com"),
        ] {
            let expected = ConfigEntry::from_result(shape_of(&c).config(&allowed));
            assert_eq!(seen_config_map(&c, &allowed).entry, expected);
        }
    }

    #[test]
    fn counts_follow_each_edit_and_published_snapshots_stay_as_they_were() {
        let none = ExtraEnvAllowlist::none();
        let good = "carto-bq@my-project.iam.gserviceaccount.com";
        let mut w = WatchState::new("wi-system");
        w.apply_config_map(
            "wi-system",
            seen_config_map(&cm("wi-system", "1", "bad"), &none),
        );
        w.apply_config_map("a", seen_config_map(&cm("a", "1", good), &none));
        let published = w.snapshot().clone();
        w.apply_config_map("a", seen_config_map(&cm("a", "2", "bad"), &none));
        w.apply_config_map("b", seen_config_map(&cm("b", "1", good), &none));
        assert_eq!(w.snapshot().config_map_counts(), (1, 2));
        assert_eq!(published.config_map_counts(), (1, 1));
        assert_eq!(published.seen_namespace("a").unwrap().resource_version, "1");
        assert!(published.seen_namespace("b").is_none());
        w.delete_config_map("wi-system");
        assert_eq!(w.snapshot().config_map_counts(), (1, 1));
        let listed = [("b".to_owned(), seen_config_map(&cm("b", "3", "bad"), &none))];
        w.replace_config_maps(listed.into());
        assert_eq!(w.snapshot().config_map_counts(), (0, 1));
        let (seen, origin) = w.snapshot().resolve_seen("b").unwrap();
        assert_eq!(
            (seen.uid.as_str(), origin),
            ("uid-b", ConfigOrigin::Namespace)
        );
    }
}
