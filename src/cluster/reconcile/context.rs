//! What every reconcile shares: the client, Events, metrics, the settings, the snapshot in force,
//! the rate limiter, and the tally of targets by state behind the `cluster_targets` gauges.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject};

use super::super::events::Events;
use super::super::metrics::{ClusterMetrics, TargetState};
use crate::admission::Kind;
use crate::config::ConfigSnapshot;
use crate::settings::Settings;

/// Everything a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Events, posted once each.
    pub events: Events,
    /// Cluster metrics.
    pub metrics: ClusterMetrics,
    /// Policy settings (the same as admission's).
    pub settings: Settings,
    /// The snapshot in force (the one admission reads, ConfigMap versions included).
    pub snapshot: Box<dyn Fn() -> Arc<ConfigSnapshot> + Send + Sync>,
    /// The webhook's namespace (where the default ConfigMap is).
    pub own_namespace: String,
    /// Namespaces never visited (`--exclude-namespaces`, kube-system, the webhook's own).
    excluded: BTreeSet<String>,
    limiter: tokio::sync::Mutex<tokio::time::Interval>,
    counts: Mutex<BTreeMap<String, Counts>>,
}

/// Targets by kind and state in one namespace.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Counts([[usize; 4]; 2]);

impl Counts {
    pub(super) fn add(&mut self, kind: Kind, state: TargetState) {
        let k = usize::from(kind == Kind::Deployment);
        let s = TargetState::ALL
            .iter()
            .position(|x| *x == state)
            .unwrap_or(0);
        self.0[k][s] += 1;
    }
}

impl Context {
    /// A context that makes at most `qps` API requests per second.
    pub fn new(
        client: kube::Client,
        events: Events,
        metrics: ClusterMetrics,
        settings: Settings,
        snapshot: impl Fn() -> Arc<ConfigSnapshot> + Send + Sync + 'static,
        own_namespace: String,
        qps: u32,
    ) -> Self {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / qps.max(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            client,
            events,
            metrics,
            settings,
            snapshot: Box::new(snapshot),
            own_namespace,
            excluded: BTreeSet::new(),
            limiter: tokio::sync::Mutex::new(interval),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Never visit these namespaces (the webhooks do not see them either).
    pub fn excluding(mut self, namespaces: BTreeSet<String>) -> Self {
        self.excluded = namespaces;
        self
    }

    /// Is `namespace` left out of reconciling?
    pub(super) fn is_excluded(&self, namespace: &str) -> bool {
        self.excluded.contains(namespace)
    }

    /// Wait for the rate limiter before an API request.
    pub(super) async fn throttle(&self) {
        self.limiter.lock().await.tick().await;
    }

    pub(super) fn api<K: kube::Resource<DynamicType = ()>>(
        &self,
        namespace: &str,
    ) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &ApiResource::erase::<K>(&()),
        )
    }

    pub(super) fn store_counts(&self, namespace: &str, counts: Option<Counts>) {
        let mut all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts {
            Some(c) => all.insert(namespace.to_owned(), c),
            None => all.remove(namespace),
        };
        let mut total = Counts::default();
        for c in all.values() {
            for k in 0..2 {
                for s in 0..4 {
                    total.0[k][s] += c.0[k][s];
                }
            }
        }
        drop(all);
        for (k, kind) in ["ServiceAccount", "Deployment"].into_iter().enumerate() {
            for (s, state) in TargetState::ALL.into_iter().enumerate() {
                self.metrics.targets(kind, state, total.0[k][s]);
            }
        }
    }

    pub(super) fn retain_counts(&self, keep: &HashSet<String>) {
        let stale: Vec<String> = {
            let all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            all.keys()
                .filter(|ns| !keep.contains(*ns))
                .cloned()
                .collect()
        };
        for ns in stale {
            self.store_counts(&ns, None);
        }
    }
}
