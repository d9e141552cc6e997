//! Cluster mode: `serve` without `--config`.
//!
//! - [`watch`]: every replica watches the ConfigMaps named `--config-map` (all namespaces) and the
//!   Namespaces, and publishes one snapshot that admission reads (admission never calls the API).
//! - [`reconcile`]: the replica holding the Lease ([`leader`]) brings existing targets to their
//!   config with the same core, page by page, rate limited, and posts Events ([`events`]).

use std::future::Future;
use std::sync::Arc;

use crate::config::ConfigSnapshot;
use crate::settings::Settings;

pub mod args;
pub mod client;
mod core;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod reconcile;
pub mod state;
pub mod watch;

pub use args::ClusterArgs;
pub use metrics::ClusterMetrics;

/// What can fail in cluster mode; one variant per failing API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable client configuration.
    #[error("{0}")]
    Config(String),
    /// Listing the target ServiceAccounts across namespaces.
    #[error("cannot list ServiceAccounts: {source}")]
    ListServiceAccounts {
        /// The API error.
        source: kube::Error,
    },
    /// Getting the target ServiceAccount of a namespace.
    #[error("cannot get the ServiceAccount in {namespace}: {source}")]
    GetServiceAccount {
        /// The namespace.
        namespace: String,
        /// The API error.
        source: kube::Error,
    },
    /// Listing the Deployments of a namespace.
    #[error("cannot list Deployments in {namespace}: {source}")]
    ListDeployments {
        /// The namespace.
        namespace: String,
        /// The API error.
        source: kube::Error,
    },
    /// Reading an object again after a conflict.
    #[error("cannot get {kind} {namespace}/{name}: {source}")]
    Get {
        /// The object's kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Patching an object.
    #[error("cannot patch {kind} {namespace}/{name}: {source}")]
    Patch {
        /// The object's kind.
        kind: &'static str,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Encoding an object for the core.
    #[error("cannot read a {kind}: {source}")]
    Encode {
        /// The object's kind.
        kind: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// Posting an Event.
    #[error("cannot post the {reason} Event: {source}")]
    PostEvent {
        /// The Event's reason.
        reason: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// Leader election.
    #[error("leader election: {0}")]
    Lease(String),
}

impl Error {
    /// The failing step, for the errors metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::ListServiceAccounts { .. } => "list_service_accounts",
            Self::GetServiceAccount { .. } => "get_service_account",
            Self::ListDeployments { .. } => "list_deployments",
            Self::Get { .. } => "get",
            Self::Patch { .. } => "patch",
            Self::Encode { .. } => "encode",
            Self::PostEvent { .. } => "post_event",
            Self::Lease(_) => "lease",
        }
    }
}

/// Result of cluster-mode operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the snapshot lives: `publish` replaces it, `load` reads the one in force.
pub struct SnapshotStore {
    /// Replace the snapshot.
    pub publish: Box<dyn Fn(ConfigSnapshot) + Send + Sync>,
    /// The snapshot in force.
    pub load: Box<dyn Fn() -> Arc<ConfigSnapshot> + Send + Sync>,
}

/// Everything cluster mode runs, started by [`spawn`].
pub struct Running {
    /// The watches and the elected reconciler.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Start the watches (with `synced` called after both first lists) and, with `--reconcile`,
/// the elected reconciler; everything stops when `shutdown` completes.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    client: kube::Client,
    args: &ClusterArgs,
    own_namespace: &str,
    settings: &Settings,
    store: SnapshotStore,
    metrics: ClusterMetrics,
    synced: [Box<dyn FnOnce() + Send>; 2],
    shutdown: impl Future<Output = ()> + Clone + Send + 'static,
) -> Running {
    let queue = Arc::new(queue::WorkQueue::default());
    let SnapshotStore { publish, load } = store;
    let publisher = Arc::new(watch::Publisher::new(
        own_namespace,
        publish,
        queue.clone(),
        metrics.clone(),
    ));
    let [cm_synced, ns_synced] = synced;
    // The reconciler starts its first pass only once both watches have listed everything.
    let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(0u8);
    let synced_tx = Arc::new(synced_tx);
    let bump = |f: Box<dyn FnOnce() + Send>| {
        let tx = synced_tx.clone();
        move || {
            f();
            tx.send_modify(|n| *n += 1);
        }
    };
    let (cm_synced, ns_synced) = (bump(cm_synced), bump(ns_synced));
    let mut tasks = vec![
        spawn_until(
            shutdown.clone(),
            watch::watch_config_maps(
                client.clone(),
                settings.config_map.clone(),
                publisher.clone(),
                cm_synced,
            ),
        ),
        spawn_until(
            shutdown.clone(),
            watch::watch_namespaces(client.clone(), publisher.clone(), ns_synced),
        ),
    ];
    if args.reconcile {
        let identity = identity(args);
        let events = events::Events::new(client.clone(), &identity, metrics.clone());
        let ctx = Arc::new(reconcile::Context::new(
            client.clone(),
            events,
            metrics.clone(),
            settings.clone(),
            load,
            publisher.view.clone(),
            args.reconcile_qps,
        ));
        let election = leader::Election {
            namespace: own_namespace.to_owned(),
            lease: args.lease.clone(),
            identity,
        };
        let resync = args.resync;
        tasks.push(tokio::spawn(async move {
            if synced_rx.wait_for(|n| *n >= 2).await.is_err() {
                return;
            }
            let lead = |lost| reconcile::run(ctx.clone(), queue.clone(), resync, lost);
            if let Err(e) = leader::run_elected(client, election, metrics, shutdown, lead).await {
                tracing::error!(error = %e, "leader election failed: this replica does not reconcile");
            }
        }));
    } else {
        tracing::info!("--reconcile=false: admission only, existing objects are left as they are");
    }
    Running { tasks }
}

fn spawn_until(
    shutdown: impl Future<Output = ()> + Send + 'static,
    work: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            () = work => {}
        }
    })
}

/// This replica's name: `--identity` ($POD_NAME), else the host name, else a fixed word.
fn identity(args: &ClusterArgs) -> String {
    args.identity
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "carto-wi-webhook".into())
}
