//! Flags of cluster mode (`serve` without `--config`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::duration::parse_interval;

/// Default name of the Lease that elects the reconciling replica.
pub const DEFAULT_LEASE: &str = "carto-wi-webhook";

/// How `serve` finds and works with the cluster.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cluster mode (serve without --config)")]
pub struct ClusterArgs {
    /// kubeconfig to use outside a cluster [default: the in-cluster service account, else
    /// $KUBECONFIG, else ~/.kube/config].
    #[arg(long, env = "CARTO_WI_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The webhook's own namespace: its ConfigMap is the cluster default [default: $POD_NAMESPACE,
    /// then the in-cluster namespace file].
    #[arg(long = "namespace", env = "CARTO_WI_NAMESPACE", value_name = "NS", value_parser = crate::config::rules::dns_name)]
    pub namespace: Option<String>,

    /// Bring existing ServiceAccounts and Deployments to the resolved config (one replica at a
    /// time, elected by a Lease). `--reconcile=false`: admission only.
    #[arg(long, env = "CARTO_WI_RECONCILE", default_value_t = true, action = ArgAction::Set, value_name = "BOOL")]
    pub reconcile: bool,

    /// How often every target is checked again, whatever changed.
    #[arg(long, env = "CARTO_WI_RESYNC", default_value = "10m", value_name = "DURATION", value_parser = parse_interval)]
    pub resync: Duration,

    /// Most API requests per second the reconciler makes (lists, gets and patches).
    #[arg(long, env = "CARTO_WI_RECONCILE_QPS", default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reconcile_qps: u32,

    /// Name of the Lease (in the webhook's namespace) that elects the reconciling replica.
    #[arg(long, env = "CARTO_WI_LEASE", default_value = DEFAULT_LEASE, value_name = "NAME", value_parser = crate::config::rules::dns_name)]
    pub lease: String,

    /// This replica's name in the Lease and in Events [default: $POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,
}
