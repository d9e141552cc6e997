//! Cluster mode: `serve` without `--config`.
//!
//! - [`watch`]: every replica watches the ConfigMaps named `--config-map` (all namespaces) and the
//!   Namespaces, and publishes one snapshot that admission reads (admission never calls the API).
//! - [`reconcile`]: the replica holding the Lease ([`leader`]) brings existing targets to their
//!   config with the same core, page by page, rate limited, and posts Events ([`events`]).
//! - [`certs`]: self-managed certificates (`--certs self`): the CA and serving certificate kept in a
//!   Secret, the webhooks' `caBundle`, rotated before expiry.

use std::future::Future;
use std::sync::Arc;

use crate::config::ConfigStore;
use crate::readiness::ReadinessHandle;
use crate::settings::Settings;
use crate::shutdown::Shutdown;

pub mod args;
pub mod certs;
pub mod client;
pub mod events;
pub mod inspect;
pub mod leader;
pub mod metrics;
pub mod queue;
pub mod reconcile;
pub mod state;
pub mod watch;

pub use args::{CertsMode, ClusterArgs};
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
        source: Box<kube::Error>,
    },
    /// Getting the target ServiceAccount of a namespace.
    #[error("cannot get the ServiceAccount in {namespace}: {source}")]
    GetServiceAccount {
        /// The namespace.
        namespace: String,
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing the Deployments of a namespace.
    #[error("cannot list Deployments in {namespace}: {source}")]
    ListDeployments {
        /// The namespace.
        namespace: String,
        /// The API error.
        source: Box<kube::Error>,
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
        source: Box<kube::Error>,
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
        source: Box<kube::Error>,
    },
    /// An object the core cannot read.
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
        source: Box<kube::Error>,
    },
}

impl Error {
    /// Every value of [`Error::reason`], so the errors metric has each series from start-up.
    pub const REASONS: [&'static str; 8] = [
        "config",
        "list_service_accounts",
        "get_service_account",
        "list_deployments",
        "get",
        "patch",
        "encode",
        "post_event",
    ];

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
        }
    }
}

/// Result of cluster-mode operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A background task of cluster mode.
pub type Task = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What cluster mode works with.
pub struct Cluster {
    /// The API client.
    pub client: kube::Client,
    /// Its flags.
    pub args: ClusterArgs,
    /// The webhook's namespace (the default config, the Lease).
    pub namespace: String,
    /// Policy settings (the same as admission's).
    pub settings: Settings,
    /// Where the watches publish the snapshot admission reads.
    pub store: ConfigStore,
    /// Its metrics.
    pub metrics: ClusterMetrics,
}

impl Cluster {
    /// The watches (each releasing its readiness handle after its first full list) and, with
    /// `--reconcile`, the elected reconciler. The watches run until the shutdown stops
    /// everything; the reconciler stops (and gives the Lease up) as soon as the drain starts.
    pub fn tasks(self, synced: [ReadinessHandle; 2], shutdown: &Shutdown) -> Vec<Task> {
        let queue = Arc::new(queue::WorkQueue::default());
        let publish_store = self.store.clone();
        let publisher = Arc::new(watch::Publisher::new(
            &self.namespace,
            move |s| publish_store.publish(s),
            queue.clone(),
            self.metrics.clone(),
        ));
        // The reconciler starts its first pass only once both watches have listed everything.
        let (synced_tx, synced_rx) = tokio::sync::watch::channel(0u8);
        let synced_tx = Arc::new(synced_tx);
        let [cm_ready, ns_ready] = synced.map(|handle| {
            let tx = synced_tx.clone();
            move || {
                handle.release();
                tx.send_modify(|n| *n += 1);
            }
        });
        let stopped = || {
            let s = shutdown.clone();
            async move { s.stopped().await }
        };
        let config_maps = watch::watch_config_maps(
            self.client.clone(),
            (
                self.settings.config_map.clone(),
                self.settings.extra_env.clone(),
            ),
            publisher.clone(),
            cm_ready,
        );
        let namespaces = watch::watch_namespaces(self.client.clone(), publisher.clone(), ns_ready);
        let mut tasks: Vec<Task> = vec![
            Box::pin(run_until(stopped(), config_maps)),
            Box::pin(run_until(stopped(), namespaces)),
        ];
        if self.args.reconcile {
            tasks.push(Box::pin(self.reconcile_when_elected(
                queue,
                synced_rx,
                shutdown.clone(),
            )));
        } else {
            tracing::info!(
                "--reconcile=false: admission only, existing objects are left as they are"
            );
        }
        tasks
    }

    /// Once both watches have synced: take part in the election, reconcile while leading.
    fn reconcile_when_elected(
        self,
        queue: Arc<queue::WorkQueue>,
        mut synced: tokio::sync::watch::Receiver<u8>,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send + 'static {
        let identity = identity(&self.args);
        let events = events::Events::new(self.client.clone(), &identity, self.metrics.clone());
        let store = self.store;
        let excluded = self.args.excluded_namespaces(&self.namespace);
        tracing::info!(
            excluded = %excluded.iter().map(String::as_str).collect::<Vec<_>>().join(","),
            "the reconciler leaves these namespaces out"
        );
        let ctx = Arc::new(
            reconcile::Context::new(
                self.client.clone(),
                events,
                self.metrics.clone(),
                self.settings,
                move || store.load_full(),
                self.namespace.clone(),
                self.args.reconcile_qps,
            )
            .excluding(excluded),
        );
        let election = leader::Election {
            namespace: self.namespace,
            lease: self.args.lease.clone(),
            identity,
        };
        let (client, metrics, resync) = (self.client, self.metrics, self.args.resync);
        async move {
            tokio::select! {
                () = shutdown.drain_started() => return,
                r = synced.wait_for(|n| *n >= 2) => if r.is_err() { return },
            }
            let lead = |lost| reconcile::run(ctx.clone(), queue.clone(), resync, lost);
            let until = async move { shutdown.drain_started().await };
            leader::run_elected(client, election, metrics, until, lead).await;
        }
    }
}

async fn run_until(until: impl Future<Output = ()>, work: impl Future<Output = ()>) {
    tokio::select! {
        () = until => {}
        () = work => {}
    }
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
