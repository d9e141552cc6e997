//! Cluster mode: the configuration comes from the ConfigMap watches, existing objects are
//! reconciled by the elected replica, and the serving certificate comes from `--tls-cert` files or
//! is managed in a Secret (`--certs self`, the default).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::{Common, ServeArgs, Sources, StartError, Task, standalone};
use crate::backoff::Backoff;
use crate::cluster::certs::{SelfManaged, SelfManagedArgs, SelfManagedError};
use crate::cluster::{self, CertsMode, Cluster, ClusterMetrics};
use crate::config::ConfigStore;
use crate::pki::{self, CertResolver, PairSource, TlsMetrics};
use crate::readiness::ReadinessHandle;
use crate::shutdown::Shutdown;

/// First wait before another attempt at the self-managed certificate.
const FIRST_CERT_RETRY: Duration = Duration::from_secs(2);
/// Longest wait between two attempts at the self-managed certificate.
const MAX_CERT_RETRY: Duration = Duration::from_secs(60);
/// How often the certificates' end of validity is copied into the metrics.
const CERT_METRICS_EVERY: Duration = Duration::from_secs(30);

/// Connect, then start the watches, the reconciler and the certificate source.
pub(crate) async fn start(
    args: &ServeArgs,
    common: &Common,
    registry: &mut Registry,
) -> Result<Sources, StartError> {
    let metrics = ClusterMetrics::register(registry);
    let mode = args.cluster.certs_mode(args.tls.tls_cert.is_some())?;
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
        client: client.clone(),
        args: args.cluster.clone(),
        namespace: namespace.clone(),
        settings,
        store: store.clone(),
        metrics,
    };
    let mut tasks = cluster.tasks(synced, &common.shutdown);
    let resolver = match mode {
        CertsMode::Files => {
            let certs = standalone::certificates(args, common)?;
            tasks.extend(certs.task);
            certs.resolver
        }
        CertsMode::SelfManaged => {
            let (resolver, task) = self_managed(args, common, client, namespace)?;
            tasks.push(task);
            resolver
        }
    };
    Ok(Sources {
        store,
        resolver,
        ephemeral_ca: None,
        tasks,
    })
}

/// The certificate kept in `--cert-secret`: a placeholder is served until the Secret's pair is
/// (readiness waits for it), and the task keeps the Secret, the `caBundle`s and the served pair
/// current.
fn self_managed(
    args: &ServeArgs,
    common: &Common,
    client: kube::Client,
    namespace: String,
) -> Result<(Arc<CertResolver>, Task), StartError> {
    let certs = args.cluster.certs.clone();
    certs.policy().map_err(StartError::from)?;
    let resolver = Arc::new(CertResolver::new(placeholder(&common.provider)?));
    let ready = common.readiness.add(format!(
        "TLS certificate (Secret {namespace}/{})",
        certs.cert_secret
    ));
    let run = SelfManagedRun {
        client,
        namespace,
        args: certs,
        resolver: resolver.clone(),
        metrics: common.metrics.tls.clone(),
        shutdown: common.shutdown.clone(),
    };
    Ok((resolver, Box::pin(run.run(ready))))
}

struct SelfManagedRun {
    client: kube::Client,
    namespace: String,
    args: SelfManagedArgs,
    resolver: Arc<CertResolver>,
    metrics: TlsMetrics,
    shutdown: Shutdown,
}

impl SelfManagedRun {
    /// Start (retried with backoff until it works), release readiness, publish the validity
    /// dates until the shutdown stops everything.
    async fn run(self, ready: ReadinessHandle) {
        let Some(running) = self.start().await else {
            return;
        };
        ready.release();
        let status = running.status();
        let mut tick = tokio::time::interval(CERT_METRICS_EVERY);
        loop {
            tokio::select! {
                () = self.shutdown.stopped() => break,
                _ = tick.tick() => {
                    if let Some(t) = status.serving_not_after() {
                        self.metrics.cert_not_after("serving", t);
                    }
                    if let Some(t) = status.ca_not_after() {
                        self.metrics.cert_not_after("ca", t);
                    }
                }
            }
        }
        drop(running);
    }

    async fn start(&self) -> Option<SelfManaged> {
        let mut backoff = Backoff::doubling(FIRST_CERT_RETRY, MAX_CERT_RETRY);
        loop {
            let attempt = SelfManaged::start(
                self.client.clone(),
                &self.namespace,
                &self.args,
                self.resolver.clone(),
            );
            tokio::select! {
                () = self.shutdown.stopped() => return None,
                r = attempt => match r {
                    Ok(running) => return Some(running),
                    Err(e) => tracing::error!(error = %e, retry_in = ?backoff.current(), "self-managed certificate not available yet; serving is not ready"),
                },
            }
            tokio::select! {
                () = self.shutdown.stopped() => return None,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }
}

/// A throw-away pair for localhost, served until the Secret's pair is loaded.
fn placeholder(
    provider: &rustls::crypto::CryptoProvider,
) -> Result<rustls::sign::CertifiedKey, StartError> {
    let ca = pki::CertificateAuthority::new("carto-wi-webhook placeholder", 1)
        .map_err(|e| StartError::from(SelfManagedError::from(e)))?;
    let leaf = ca
        .issue_server(&pki::localhost_names(), 1)
        .map_err(|e| StartError::from(SelfManagedError::from(e)))?;
    let src = PairSource {
        cert: "(placeholder certificate)".into(),
        key: "(placeholder key)".into(),
    };
    Ok(pki::certified_key(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        &src,
        provider,
    )?)
}
