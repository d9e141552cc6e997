//! Cluster-mode metrics: the watches, the reconciler, leadership.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    kind: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The kinds of targets (`kind` label of targets and actions).
const TARGET_KINDS: [&str; 2] = ["ServiceAccount", "Deployment"];

/// What the reconciler does to a target (`action` label).
const ACTIONS: [&str; 3] = ["patched", "conflict_retry", "refused"];

/// The two watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchName {
    /// ConfigMaps named `--config-map`.
    ConfigMaps,
    /// Namespaces (metadata).
    Namespaces,
}

impl WatchName {
    fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMaps => "configmaps",
            Self::Namespaces => "namespaces",
        }
    }
}

/// State of a target after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Matches its resolved config.
    Compliant,
    /// Differs from its config and could not be patched (the reconcile is retried).
    Drifted,
    /// No config resolves for its namespace.
    NoConfig,
    /// The config that resolves is invalid: left as it is.
    BrokenConfig,
}

impl TargetState {
    /// Every state, in label order.
    pub const ALL: [Self; 4] = [
        Self::Compliant,
        Self::Drifted,
        Self::NoConfig,
        Self::BrokenConfig,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Drifted => "drifted",
            Self::NoConfig => "no_config",
            Self::BrokenConfig => "broken_config",
        }
    }
}

/// Every cluster-mode series.
#[derive(Debug, Clone, Default)]
pub struct ClusterMetrics {
    watch_up: Family<WatchLabels, Gauge>,
    watch_errors: Family<WatchLabels, Counter>,
    config_maps: Family<StateLabels, Gauge>,
    targets: Family<TargetLabels, Gauge>,
    actions: Family<ActionLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    events: Family<ReasonLabels, Counter>,
    reconciles: Counter,
    queue: Gauge,
    leader: Gauge,
}

impl ClusterMetrics {
    /// Register every series under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "watch_up",
            "1 while the watch is synced, 0 after an error until it lists again",
            m.watch_up.clone(),
        );
        r.register(
            "watch_errors",
            "Errors of the watches (each is retried with backoff)",
            m.watch_errors.clone(),
        );
        r.register(
            "configmaps",
            "Workload Identity ConfigMaps seen, by state (valid, invalid)",
            m.config_maps.clone(),
        );
        r.register("targets", "Targets by kind and state after their last reconcile (patched ones count as compliant)", m.targets.clone());
        r.register(
            "reconcile_actions",
            "Changes made by the reconciler, by kind and action",
            m.actions.clone(),
        );
        r.register(
            "reconcile_errors",
            "Failed reconciles, by failing step (retried with backoff)",
            m.errors.clone(),
        );
        r.register("events", "Events posted, by reason", m.events.clone());
        r.register("reconciles", "Namespaces reconciled", m.reconciles.clone());
        r.register(
            "reconcile_queue",
            "Namespaces waiting to be reconciled",
            m.queue.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the Lease and reconciles",
            m.leader.clone(),
        );
        for w in [WatchName::ConfigMaps, WatchName::Namespaces] {
            let _ = m.watch_up.get_or_create(&WatchLabels { watch: w.as_str() });
            let _ = m
                .watch_errors
                .get_or_create(&WatchLabels { watch: w.as_str() });
        }
        for state in ["valid", "invalid"] {
            let _ = m.config_maps.get_or_create(&StateLabels { state });
        }
        m.create_reconcile_series();
        m
    }

    /// The reconciler's series at 0 from start-up: `increase()` and the alerts on them see the
    /// first error or drift, and the dashboard's queries find every family.
    fn create_reconcile_series(&self) {
        for kind in TARGET_KINDS {
            for state in TargetState::ALL {
                self.targets(kind, state, 0);
            }
            for action in ACTIONS {
                let _ = self.actions.get_or_create(&ActionLabels { kind, action });
            }
        }
        for reason in super::Error::REASONS {
            let _ = self.errors.get_or_create(&ReasonLabels { reason });
        }
    }

    /// A watch listed everything (`up`) or failed.
    pub fn watch_state(&self, w: WatchName, up: bool) {
        self.watch_up
            .get_or_create(&WatchLabels { watch: w.as_str() })
            .set(i64::from(up));
        if !up {
            self.watch_errors
                .get_or_create(&WatchLabels { watch: w.as_str() })
                .inc();
        }
    }

    /// ConfigMaps by validity.
    pub fn config_maps(&self, valid: usize, invalid: usize) {
        let set = |state, n: usize| {
            self.config_maps
                .get_or_create(&StateLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("valid", valid);
        set("invalid", invalid);
    }

    /// Targets of `kind` in `state`, summed over namespaces.
    pub fn targets(&self, kind: &'static str, state: TargetState, n: usize) {
        self.targets
            .get_or_create(&TargetLabels {
                kind,
                state: state.as_str(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The reconciler changed an object.
    pub fn action(&self, kind: &'static str, action: &'static str) {
        self.actions
            .get_or_create(&ActionLabels { kind, action })
            .inc();
    }

    /// A reconcile failed at `reason`.
    pub fn error(&self, reason: &'static str) {
        self.errors.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// An Event was posted.
    pub fn event(&self, reason: &'static str) {
        self.events.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// A namespace was reconciled.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// Length of the work queue.
    pub fn queue_len(&self, n: usize) {
        self.queue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Leadership gained or lost.
    pub fn leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_series_exist_at_zero_from_start_up() {
        let mut registry = crate::metrics::registry();
        let m = ClusterMetrics::register(&mut registry);
        m.error("patch");
        let text = crate::metrics::encode(&registry);
        for needle in [
            "carto_wi_cluster_targets{kind=\"Deployment\",state=\"drifted\"} 0",
            "carto_wi_cluster_targets{kind=\"ServiceAccount\",state=\"compliant\"} 0",
            "carto_wi_cluster_reconcile_actions_total{kind=\"Deployment\",action=\"refused\"} 0",
            "carto_wi_cluster_reconcile_errors_total{reason=\"post_event\"} 0",
            "carto_wi_cluster_reconcile_errors_total{reason=\"patch\"} 1",
            "carto_wi_cluster_watch_up{watch=\"namespaces\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
