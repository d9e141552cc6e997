//! A point-in-time view of every configuration the webhook knows, and how a namespace resolves one.

use std::sync::Arc;

use super::model::WorkloadIdentityConfig;
use super::problem::ConfigProblem;
use super::shared_map::SharedMap;

/// One ConfigMap as last seen: either a usable configuration or the problems that make it unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigEntry {
    /// A valid configuration.
    Valid(Arc<WorkloadIdentityConfig>),
    /// A ConfigMap that exists but breaks the rules (e.g. stored before the webhook ran).
    Invalid(Arc<Vec<ConfigProblem>>),
}

impl ConfigEntry {
    /// Build an entry from a parse result.
    pub fn from_result(r: Result<WorkloadIdentityConfig, Vec<ConfigProblem>>) -> Self {
        match r {
            Ok(c) => Self::Valid(Arc::new(c)),
            Err(p) => Self::Invalid(Arc::new(p)),
        }
    }
}

/// Where a namespace's configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigOrigin {
    /// The ConfigMap in the object's own namespace.
    Namespace,
    /// The cluster default (the webhook's namespace, or the standalone `--config` file).
    Default,
}

/// The outcome of resolving a namespace's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A valid configuration applies.
    Config(&'a WorkloadIdentityConfig, ConfigOrigin),
    /// The ConfigMap that applies is invalid.
    Broken(&'a [ConfigProblem], ConfigOrigin),
    /// No configuration applies.
    None,
}

/// One ConfigMap as last seen: its entry, and what Events that refer to it need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenConfigMap {
    /// Its configuration, or the problems that make it unusable.
    pub entry: ConfigEntry,
    /// Its uid (empty outside the cluster).
    pub uid: String,
    /// Its resourceVersion (empty outside the cluster).
    pub resource_version: String,
}

impl SeenConfigMap {
    /// An entry that did not come from the API (a file, a test).
    pub fn unversioned(entry: ConfigEntry) -> Self {
        Self {
            entry,
            uid: String::new(),
            resource_version: String::new(),
        }
    }

    fn is_valid(&self) -> bool {
        matches!(self.entry, ConfigEntry::Valid(_))
    }
}

/// Every configuration known at one instant, immutable once published. Its maps are shared
/// between snapshots ([`SharedMap`]): the watch edits one entry and publishes after each event
/// without copying every ConfigMap.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    default: Option<Arc<SeenConfigMap>>,
    namespaces: SharedMap<Arc<SeenConfigMap>>,
    opted_out: SharedMap<()>,
    /// Invalid ConfigMaps held (the default included), kept as entries come and go.
    invalid: usize,
}

impl ConfigSnapshot {
    /// A snapshot with only a default configuration (standalone mode).
    pub fn with_default(entry: ConfigEntry) -> Self {
        let mut s = Self::default();
        s.set_default(Some(entry));
        s
    }

    /// Set or clear the cluster default.
    pub fn set_default(&mut self, entry: Option<ConfigEntry>) {
        self.put_default(entry.map(SeenConfigMap::unversioned));
    }

    /// Set the ConfigMap of one namespace.
    pub fn set_namespace(&mut self, namespace: impl Into<String>, entry: ConfigEntry) {
        self.put_namespace(namespace.into(), SeenConfigMap::unversioned(entry));
    }

    /// Forget the ConfigMap of one namespace.
    pub fn remove_namespace(&mut self, namespace: &str) -> Option<Arc<SeenConfigMap>> {
        let old = self.namespaces.remove(namespace);
        self.count(old.as_deref(), None);
        old
    }

    /// Set or clear the cluster default as seen; returns the one it replaces.
    pub fn put_default(&mut self, seen: Option<SeenConfigMap>) -> Option<Arc<SeenConfigMap>> {
        let new = seen.map(Arc::new);
        self.count(self.default.clone().as_deref(), new.as_deref());
        std::mem::replace(&mut self.default, new)
    }

    /// Set the ConfigMap of one namespace as seen; returns the one it replaces.
    pub fn put_namespace(
        &mut self,
        namespace: String,
        seen: SeenConfigMap,
    ) -> Option<Arc<SeenConfigMap>> {
        let new = Arc::new(seen);
        let old = self.namespaces.insert(namespace, new.clone());
        self.count(old.as_deref(), Some(&new));
        old
    }

    /// Replace every namespace ConfigMap (a relist); returns the ones it replaces.
    pub fn replace_namespaces(
        &mut self,
        listed: SharedMap<Arc<SeenConfigMap>>,
    ) -> SharedMap<Arc<SeenConfigMap>> {
        let old = std::mem::replace(&mut self.namespaces, listed);
        self.invalid = self
            .default
            .iter()
            .chain(self.namespaces.iter().map(|(_, s)| s))
            .filter(|s| !s.is_valid())
            .count();
        old
    }

    fn count(&mut self, old: Option<&SeenConfigMap>, new: Option<&SeenConfigMap>) {
        let invalid = |s: Option<&SeenConfigMap>| usize::from(s.is_some_and(|s| !s.is_valid()));
        self.invalid = self.invalid + invalid(new) - invalid(old);
    }

    /// Mark a namespace as opted out (label `workload-identity.carto.com/inject: "false"`);
    /// returns whether it was.
    pub fn set_opted_out(&mut self, namespace: impl Into<String>, opted_out: bool) -> bool {
        let ns = namespace.into();
        if opted_out {
            self.opted_out.insert(ns, ()).is_some()
        } else {
            self.opted_out.remove(&ns).is_some()
        }
    }

    /// Replace the opted-out namespaces (a relist); returns the ones it replaces.
    pub fn replace_opted_out(&mut self, opted_out: SharedMap<()>) -> SharedMap<()> {
        std::mem::replace(&mut self.opted_out, opted_out)
    }

    /// Is this namespace opted out?
    pub fn is_opted_out(&self, namespace: &str) -> bool {
        self.opted_out.contains_key(namespace)
    }

    /// Number of namespace ConfigMaps held.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// Namespaces that have their own ConfigMap (the default's aside).
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|(ns, _)| ns)
    }

    /// The cluster default as last seen.
    pub fn seen_default(&self) -> Option<&SeenConfigMap> {
        self.default.as_deref()
    }

    /// The ConfigMap of `namespace` as last seen.
    pub fn seen_namespace(&self, namespace: &str) -> Option<&SeenConfigMap> {
        self.namespaces.get(namespace).map(|s| &**s)
    }

    /// ConfigMaps held (the default included) by validity: `(valid, invalid)`.
    pub fn config_map_counts(&self) -> (usize, usize) {
        let all = self.namespaces.len() + usize::from(self.default.is_some());
        (all - self.invalid, self.invalid)
    }

    /// The configuration for `namespace`: its own ConfigMap, else the default, else none.
    /// A namespace ConfigMap replaces the default whole.
    pub fn resolve(&self, namespace: &str) -> Resolved<'_> {
        Resolved::of(self.resolve_seen(namespace))
    }

    /// The ConfigMap whose configuration applies to `namespace`, and where it came from.
    pub fn resolve_seen(&self, namespace: &str) -> Option<(&SeenConfigMap, ConfigOrigin)> {
        match self.seen_namespace(namespace) {
            Some(s) => Some((s, ConfigOrigin::Namespace)),
            None => self.seen_default().map(|s| (s, ConfigOrigin::Default)),
        }
    }
}

impl<'a> Resolved<'a> {
    /// What the ConfigMap found by [`ConfigSnapshot::resolve_seen`] resolves to.
    pub fn of(seen: Option<(&'a SeenConfigMap, ConfigOrigin)>) -> Self {
        match seen {
            Some((s, origin)) => entry(&s.entry, origin),
            None => Self::None,
        }
    }
}

fn entry(e: &ConfigEntry, origin: ConfigOrigin) -> Resolved<'_> {
    match e {
        ConfigEntry::Valid(c) => Resolved::Config(c, origin),
        ConfigEntry::Invalid(p) => Resolved::Broken(p, origin),
    }
}
