//! A point-in-time view of every configuration the webhook knows, and how a namespace resolves one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::model::WorkloadIdentityConfig;
use super::problem::ConfigProblem;

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

/// Every configuration known at one instant. Cheap to share (`Arc`) and immutable once built.
#[derive(Debug, Clone, Default)]
pub struct ConfigSnapshot {
    default: Option<ConfigEntry>,
    namespaces: HashMap<String, ConfigEntry>,
    opted_out: HashSet<String>,
}

impl ConfigSnapshot {
    /// A snapshot with only a default configuration (standalone mode).
    pub fn with_default(entry: ConfigEntry) -> Self {
        Self {
            default: Some(entry),
            ..Self::default()
        }
    }

    /// Set or clear the cluster default.
    pub fn set_default(&mut self, entry: Option<ConfigEntry>) {
        self.default = entry;
    }

    /// Set the ConfigMap of one namespace.
    pub fn set_namespace(&mut self, namespace: impl Into<String>, entry: ConfigEntry) {
        self.namespaces.insert(namespace.into(), entry);
    }

    /// Forget the ConfigMap of one namespace.
    pub fn remove_namespace(&mut self, namespace: &str) {
        self.namespaces.remove(namespace);
    }

    /// Mark a namespace as opted out (label `workload-identity.carto.com/inject: "false"`).
    pub fn set_opted_out(&mut self, namespace: impl Into<String>, opted_out: bool) {
        let ns = namespace.into();
        if opted_out {
            self.opted_out.insert(ns);
        } else {
            self.opted_out.remove(&ns);
        }
    }

    /// Is this namespace opted out?
    pub fn is_opted_out(&self, namespace: &str) -> bool {
        self.opted_out.contains(namespace)
    }

    /// Number of namespace ConfigMaps held.
    pub fn namespace_count(&self) -> usize {
        self.namespaces.len()
    }

    /// The configuration for `namespace`: its own ConfigMap, else the default, else none.
    /// A namespace ConfigMap replaces the default whole.
    pub fn resolve(&self, namespace: &str) -> Resolved<'_> {
        match self.namespaces.get(namespace) {
            Some(e) => entry(e, ConfigOrigin::Namespace),
            None => match &self.default {
                Some(e) => entry(e, ConfigOrigin::Default),
                None => Resolved::None,
            },
        }
    }
}

fn entry(e: &ConfigEntry, origin: ConfigOrigin) -> Resolved<'_> {
    match e {
        ConfigEntry::Valid(c) => Resolved::Config(c, origin),
        ConfigEntry::Invalid(p) => Resolved::Broken(p, origin),
    }
}
