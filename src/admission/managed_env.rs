//! The extra variables the webhook manages in a pod template, recorded in its
//! `workload-identity.carto.com/managed-env` annotation, so that a key removed from the config is
//! taken back out of the targets, and a variable the webhook did not add is never removed.

use std::collections::{BTreeSet, HashSet};

use super::patch::{PatchBuilder, pointer};
use super::target::ContainerRef;
use super::view::Object;
use crate::config::{WorkloadIdentityConfig, rules};
use crate::settings::MANAGED_ENV_ANNOTATION;

/// At most this many names are read from the annotation (the config passes at most
/// [`crate::config::extra::MAX_EXTRA_KEYS`]); any beyond are left alone, never removed.
const MAX_RECORDED_NAMES: usize = 64;

/// What one pass of mutation knows and decides about the managed extra variables.
pub struct ManagedEnv<'o> {
    /// Whether the pod template carries the annotation (whatever its value).
    annotated: bool,
    /// The names it lists (pass-through keys only).
    previous: BTreeSet<&'o str>,
    /// Listed names the config no longer passes through: their entries are removed.
    stale: HashSet<&'o str>,
    /// The config's extras this pass appended or replaced somewhere.
    touched: BTreeSet<String>,
}

impl<'o> ManagedEnv<'o> {
    /// The record on `obj`'s pod template, against `config`.
    pub fn of(obj: &'o Object<'_>, config: &WorkloadIdentityConfig) -> Self {
        let value = obj
            .template_meta()
            .and_then(|m| m.annotations.get())
            .and_then(|a| a.get(MANAGED_ENV_ANNOTATION));
        let previous: BTreeSet<&'o str> = value
            .and_then(|v| v.str())
            .into_iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|n| rules::is_pass_through_key(n))
            .take(MAX_RECORDED_NAMES)
            .collect();
        let stale = previous
            .iter()
            .copied()
            .filter(|n| config.extra.iter().all(|(k, _)| k != n))
            .collect();
        Self {
            annotated: value.is_some(),
            previous,
            stale,
            touched: BTreeSet::new(),
        }
    }

    /// This pass set extra variable `name` (appended or replaced) in some container.
    pub fn touch(&mut self, name: &str) {
        if !self.touched.contains(name) {
            self.touched.insert(name.to_owned());
        }
    }

    /// Remove from container `c` (its env list at `env_path`) every entry of a stale name that
    /// holds a literal value: a `valueFrom` entry was never the webhook's. Positions are the
    /// list's before this pass; removed last to first, after the container's other operations
    /// (which only replace in place or append), so every position stays right.
    pub fn remove_stale(
        &self,
        c: &ContainerRef<'_, '_>,
        env_path: &[&str],
        patch: &mut PatchBuilder,
    ) {
        if self.stale.is_empty() {
            return;
        }
        let Some(list) = c.container.env.get() else {
            return;
        };
        let stale_at = list.iter().enumerate().rev().filter(|(_, e)| {
            e.get().is_some_and(|e| {
                !e.value_from.is_set() && e.name.str().is_some_and(|n| self.stale.contains(n))
            })
        });
        for (j, _) in stale_at {
            let j = j.to_string();
            patch.remove(pointer(env_path.iter().copied().chain([j.as_str()])));
        }
    }

    /// The annotation's new value: the config's extras that were recorded before or set now,
    /// sorted; `None` when there are none.
    pub fn record(&self, config: &WorkloadIdentityConfig) -> Option<String> {
        let names: Vec<&str> = config
            .extra
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| self.previous.contains(k) || self.touched.contains(*k))
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }

    /// Whether the pod template carries the annotation now.
    pub fn annotated(&self) -> bool {
        self.annotated
    }
}
