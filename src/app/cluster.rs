//! Cluster mode: the configuration comes from the ConfigMap watches, existing objects are
//! reconciled by the elected replica, and the serving certificate comes from `--tls-cert` files or
//! is managed in a Secret (`--certs self`, the default).

use prometheus_client::registry::Registry;

use super::{Common, ServeArgs, Sources, StartError, standalone};
use crate::cluster::{self, Cluster, ClusterMetrics};
use crate::config::ConfigStore;

/// Connect, then start the watches, the reconciler and the certificate source.
pub(crate) async fn start(
    args: &ServeArgs,
    common: &Common,
    registry: &mut Registry,
) -> Result<Sources, StartError> {
    let metrics = ClusterMetrics::register(registry);
    let client = cluster::client::connect(args.cluster.kubeconfig.as_deref()).await?;
    let namespace = cluster::client::own_namespace(args.cluster.namespace.as_deref())?;
    let settings = args.policy.settings();
    tracing::info!(
        namespace = %namespace,
        default_config = %format!("{namespace}/{}", settings.config_map),
        reconcile = args.cluster.reconcile,
        "cluster mode: watching the {} ConfigMaps of every namespace",
        settings.config_map
    );
    let store = ConfigStore::default();
    let synced = [
        common.readiness.add("ConfigMap watch (first full list)"),
        common.readiness.add("Namespace watch (first full list)"),
    ];
    let cluster = Cluster {
        client,
        args: args.cluster.clone(),
        namespace,
        settings,
        store: store.clone(),
        metrics,
    };
    let mut tasks = cluster.tasks(synced, &common.shutdown);
    let certs = standalone::certificates(args, common)?;
    tasks.extend(certs.task);
    Ok(Sources {
        store,
        resolver: certs.resolver,
        ephemeral_ca: certs.ephemeral_ca,
        tasks,
    })
}
