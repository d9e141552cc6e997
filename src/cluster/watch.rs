//! The config watch, run by every replica: ConfigMaps named `--config-map` in all namespaces (a
//! field selector on the name, so only those are listed and kept) and Namespaces (metadata only,
//! for the opt-out label). Each change edits one entry of the snapshot and publishes it;
//! admission reads only that. A watch error keeps the last synced state in force and reconnects
//! with backoff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tracing::Instrument;

use super::metrics::{ClusterMetrics, WatchName};
use super::queue::{Work, WorkQueue};
use super::state::{Change, WatchState, seen_config_map};
use crate::config::{ConfigEntry, ConfigSnapshot, ExtraEnvAllowlist, SeenConfigMap};

/// ConfigMaps per page of the watch's (re)list: at most ~10 MiB of data held at once.
const CONFIG_MAP_PAGE: u32 = 10;

/// Where the watches publish what they see.
pub struct Publisher {
    state: Mutex<WatchState>,
    publish: Box<dyn Fn(ConfigSnapshot) + Send + Sync>,
    queue: Arc<WorkQueue>,
    metrics: ClusterMetrics,
}

impl Publisher {
    /// Publish snapshots with `publish`, queue reconciles on `queue`.
    pub fn new(
        own_namespace: &str,
        publish: impl Fn(ConfigSnapshot) + Send + Sync + 'static,
        queue: Arc<WorkQueue>,
        metrics: ClusterMetrics,
    ) -> Self {
        Self {
            state: Mutex::new(WatchState::new(own_namespace)),
            publish: Box::new(publish),
            queue,
            metrics,
        }
    }

    /// Change the state under the lock, publish the result, queue what changed. Publishing
    /// clones the snapshot, which shares its maps: O(1), whatever the number of ConfigMaps.
    pub fn update(&self, f: impl FnOnce(&mut WatchState) -> Vec<Change>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let changes = f(&mut state);
        let (valid, invalid) = state.snapshot().config_map_counts();
        (self.publish)(state.snapshot().clone());
        drop(state);
        self.metrics.config_maps(valid, invalid);
        for c in changes {
            self.queue.add(match c {
                Change::Default => Work::DefaultUsers,
                Change::ConfigMap(ns) | Change::OptedIn(ns) => Work::Namespace(ns),
            });
        }
    }
}

/// Run the ConfigMap watch until the stream ends; `synced` is called after the first full list.
/// `allowed` are the pass-through keys a ConfigMap may hold.
pub async fn watch_config_maps(
    client: kube::Client,
    (config_map, allowed): (String, ExtraEnvAllowlist),
    publisher: Arc<Publisher>,
    synced: impl FnOnce() + Send,
) {
    // Small pages: a list page is held whole while its ConfigMaps are parsed, and each may hold
    // up to 1 MiB of data.
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={config_map}"))
        .page_size(CONFIG_MAP_PAGE);
    let stream = watcher(Api::<ConfigMap>::all(client), config).default_backoff();
    let span = tracing::info_span!("watch", watch = "configmaps", name = %config_map);
    let mut listed = BTreeMap::new();
    drive(
        stream,
        WatchName::ConfigMaps,
        &publisher,
        synced,
        |event| match event {
            Event::Init => listed.clear(),
            Event::InitApply(cm) => {
                if let Some(ns) = cm.metadata.namespace.clone() {
                    let seen = seen_config_map(&cm, &allowed);
                    report(&ns, &cm, &seen);
                    listed.insert(ns, seen);
                }
            }
            Event::InitDone => {
                let all = std::mem::take(&mut listed);
                publisher.update(|w| w.replace_config_maps(all));
            }
            Event::Apply(cm) => {
                if let Some(ns) = cm.metadata.namespace.clone() {
                    let seen = seen_config_map(&cm, &allowed);
                    report(&ns, &cm, &seen);
                    publisher.update(|w| w.apply_config_map(&ns, seen).into_iter().collect());
                }
            }
            Event::Delete(cm) => {
                if let Some(ns) = cm.metadata.namespace.clone() {
                    tracing::info!(namespace = %ns, "ConfigMap deleted: objects keep their values");
                    publisher.update(|w| w.delete_config_map(&ns).into_iter().collect());
                }
            }
        },
    )
    .instrument(span)
    .await;
}

/// Run the Namespace watch (metadata only) until the stream ends.
pub async fn watch_namespaces(
    client: kube::Client,
    publisher: Arc<Publisher>,
    synced: impl FnOnce() + Send,
) {
    let stream = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client),
        watcher::Config::default(),
    )
    .default_backoff();
    let span = tracing::info_span!("watch", watch = "namespaces");
    let mut listed = Vec::new();
    drive(
        stream,
        WatchName::Namespaces,
        &publisher,
        synced,
        |event: Event<PartialObjectMeta<Namespace>>| match event {
            Event::Init => listed.clear(),
            Event::InitApply(ns) => listed.push(ns.metadata),
            Event::InitDone => {
                let all = std::mem::take(&mut listed);
                publisher.update(|w| w.replace_namespaces(all));
            }
            Event::Apply(ns) => {
                publisher.update(|w| w.apply_namespace(&ns.metadata).into_iter().collect())
            }
            Event::Delete(ns) => publisher.update(|w| {
                w.delete_namespace(&ns.metadata);
                Vec::new()
            }),
        },
    )
    .instrument(span)
    .await;
}

/// Feed every event to `on_event`; track errors and the first full list.
async fn drive<K>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    name: WatchName,
    publisher: &Publisher,
    synced: impl FnOnce() + Send,
    mut on_event: impl FnMut(Event<K>),
) {
    let mut synced = Some(synced);
    // Up once the first full list is done; down from an error until the next event.
    let mut up = false;
    let mut failing = false;
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let done = matches!(event, Event::InitDone);
                on_event(event);
                if done && let Some(f) = synced.take() {
                    tracing::info!("watch synced (first full list)");
                    f();
                }
                if !up && synced.is_none() {
                    up = true;
                    publisher.metrics.watch_state(name, true);
                }
                if failing {
                    failing = false;
                    tracing::info!("watch resumed");
                }
            }
            Err(e) => {
                up = false;
                publisher.metrics.watch_state(name, false);
                // One line when it breaks; the retries (with backoff) only at debug.
                if failing {
                    tracing::debug!(error = %e, "watch still failing");
                } else {
                    tracing::warn!(error = %e, "watch failed: serving the last synced state, reconnecting with backoff");
                }
                failing = true;
            }
        }
    }
}

/// Log an invalid ConfigMap (the leader also posts a Warning Event on it).
fn report(namespace: &str, cm: &ConfigMap, seen: &SeenConfigMap) {
    if let ConfigEntry::Invalid(problems) = &seen.entry {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        tracing::warn!(
            namespace,
            name = cm.metadata.name.as_deref().unwrap_or(""),
            resource_version = %seen.resource_version,
            problems = %list.join("; "),
            "invalid ConfigMap: Workload Identity is not applied in the namespaces it configures"
        );
    }
}
