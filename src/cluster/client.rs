//! The Kubernetes client and the webhook's own namespace.

use std::path::Path;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use super::{Error, Result};

/// Where the in-cluster service account's namespace is mounted.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A client from `--kubeconfig`, else the in-cluster service account, else `$KUBECONFIG` or
/// `~/.kube/config`.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => from_file(path).await?,
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            Config::incluster().map_err(|e| Error::Config(e.to_string()))?
        }
        None => Config::from_kubeconfig(&KubeConfigOptions::default())
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cluster mode (serve without --config): not in a cluster and no usable \
                     kubeconfig ($KUBECONFIG or ~/.kube/config): {e}; pass --kubeconfig FILE, or \
                     --config FILE to run standalone"
                ))
            })?,
    };
    kube::Client::try_from(config).map_err(|e| Error::Config(e.to_string()))
}

async fn from_file(path: &Path) -> Result<Config> {
    let named =
        |e: &dyn std::fmt::Display| Error::Config(format!("--kubeconfig {}: {e}", path.display()));
    let kc = Kubeconfig::read_from(path).map_err(|e| named(&e))?;
    Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| named(&e))
}

/// The webhook's namespace: `--namespace`, else `$POD_NAMESPACE`, else the in-cluster file.
pub fn own_namespace(flag: Option<&str>) -> Result<String> {
    if let Some(ns) = flag {
        return Ok(ns.to_owned());
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.trim().is_empty()
    {
        return Ok(ns.trim().to_owned());
    }
    match std::fs::read_to_string(NAMESPACE_FILE) {
        Ok(ns) if !ns.trim().is_empty() => Ok(ns.trim().to_owned()),
        _ => Err(Error::Config(
            "cannot tell the webhook's namespace: pass --namespace NS (or set POD_NAMESPACE)"
                .into(),
        )),
    }
}
