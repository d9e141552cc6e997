//! Flags of cluster mode (`serve` without `--config`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, ValueEnum};

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

    /// Namespaces the reconciler never visits (comma-separated), as the webhooks'
    /// namespaceSelector leaves them out; kube-system and the webhook's own namespace are always
    /// left out as well.
    #[arg(long, env = "CARTO_WI_EXCLUDE_NAMESPACES", value_delimiter = ',', value_name = "NS,...", value_parser = crate::config::rules::dns_name)]
    pub exclude_namespaces: Vec<String>,

    /// Most API requests per second the reconciler makes (lists, gets and patches).
    #[arg(long, env = "CARTO_WI_RECONCILE_QPS", default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub reconcile_qps: u32,

    /// Name of the Lease (in the webhook's namespace) that elects the reconciling replica.
    #[arg(long, env = "CARTO_WI_LEASE", default_value = DEFAULT_LEASE, value_name = "NAME", value_parser = crate::config::rules::dns_name)]
    pub lease: String,

    /// This replica's name in the Lease and in Events [default: $POD_NAME, else the host name].
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,

    /// Where the serving certificate comes from: `self` (a CA and certificate kept in
    /// --cert-secret, written into the webhook configurations' caBundle) or `files`
    /// (--tls-cert/--tls-key, e.g. from cert-manager) [default: files when --tls-cert is given,
    /// else self].
    #[arg(long = "certs", env = "CARTO_WI_CERTS", value_name = "self|files")]
    pub certs_mode: Option<CertsMode>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub certs: super::certs::SelfManagedArgs,
}

/// Where the serving certificate comes from in cluster mode.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertsMode {
    /// Managed in a Secret by the webhook itself.
    #[value(name = "self")]
    SelfManaged,
    /// The --tls-cert/--tls-key files.
    Files,
}

/// Namespaces the reconciler leaves out whatever `--exclude-namespaces` says: the API server's
/// own, and the webhook's (which the chart's webhooks never see either).
pub const ALWAYS_EXCLUDED: &str = "kube-system";

impl ClusterArgs {
    /// Every namespace the reconciler leaves out: `--exclude-namespaces`, kube-system and
    /// `own_namespace`.
    pub fn excluded_namespaces(&self, own_namespace: &str) -> std::collections::BTreeSet<String> {
        let mut all: std::collections::BTreeSet<String> =
            self.exclude_namespaces.iter().cloned().collect();
        all.insert(ALWAYS_EXCLUDED.to_owned());
        all.insert(own_namespace.to_owned());
        all
    }

    /// The certificate mode in force, given whether --tls-cert/--tls-key were passed.
    pub fn certs_mode(&self, tls_files: bool) -> Result<CertsMode, super::Error> {
        match (self.certs_mode, tls_files) {
            (None, true) | (Some(CertsMode::Files), true) => Ok(CertsMode::Files),
            (None, false) | (Some(CertsMode::SelfManaged), false) => Ok(CertsMode::SelfManaged),
            (Some(CertsMode::Files), false) => Err(super::Error::Config(
                "--certs files: pass --tls-cert and --tls-key".into(),
            )),
            (Some(CertsMode::SelfManaged), true) => Err(super::Error::Config(
                "--certs self: the certificate is kept in --cert-secret; drop --tls-cert/--tls-key (or use --certs files)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cluster: ClusterArgs,
    }

    #[test]
    fn excluded_namespaces_always_hold_kube_system_and_the_own_one() {
        let cli = Cli::try_parse_from(["x", "--exclude-namespaces=legacy,sandbox,legacy"]).unwrap();
        let all: Vec<String> = cli
            .cluster
            .excluded_namespaces("wi-system")
            .into_iter()
            .collect();
        assert_eq!(all, ["kube-system", "legacy", "sandbox", "wi-system"]);
        let none = Cli::try_parse_from(["x"]).unwrap();
        let all: Vec<String> = none
            .cluster
            .excluded_namespaces("wi-system")
            .into_iter()
            .collect();
        assert_eq!(all, ["kube-system", "wi-system"]);
    }

    #[test]
    fn a_bad_namespace_name_is_a_clear_error() {
        let err = Cli::try_parse_from(["x", "--exclude-namespaces=ok,Bad_NS"])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("--exclude-namespaces") && err.contains("Bad_NS"),
            "{err}"
        );
    }
}
