//! Self-managed certificates (`--certs self`): a CA and a serving certificate kept in a Secret,
//! the CA written into the `caBundle` of the named webhook configurations, rotated before expiry.
//!
//! The Secret (`--cert-secret`, type `kubernetes.io/tls` when this creates it) holds `tls.crt`,
//! `tls.key`, `ca.crt` (every CA to trust: the `caBundle`) and `ca.key` (the key of the CA that
//! signs; its certificate is the one of `ca.crt` it matches). Every replica runs the same loop:
//! read the Secret and the two webhook configurations, [`pki::plan::plan`](crate::pki::plan::plan) one write, apply it guarded
//! by `resourceVersion` (or create-if-absent), re-read, until nothing is left to do. Racing
//! replicas converge on whichever write the API server accepted first.
//!
//! Rotation keeps clients working: a new CA goes into the Secret and the webhooks' `caBundle`
//! next to the old one before any certificate it issued is served; the old CA leaves the bundle
//! when it expires. A deleted or corrupt Secret is regenerated; the CAs the webhooks trust that
//! are still valid stay in the bundle (replicas may still serve a certificate they issued).
//! Every replica watches the Secret and serves its pair, whoever wrote it.
//!
//! RBAC (a Role in the webhook's namespace and a ClusterRole for the configurations):
//! - `secrets`, `resourceNames: [<cert-secret>]`: `get`, `update`, and `list`, `watch` (the watch
//!   sends the field selector `metadata.name=<cert-secret>`, which RBAC checks against
//!   `resourceNames`).
//! - `secrets`: `create`, without `resourceNames` (RBAC cannot restrict `create` by name). To
//!   avoid granting it, have the chart create the Secret empty (any type, e.g. `Opaque` with no
//!   data): an existing Secret is only ever updated, so `create` is then never used.
//! - `admissionregistration.k8s.io` `mutatingwebhookconfigurations` and
//!   `validatingwebhookconfigurations`, `resourceNames: [<webhook-configs>...]`: `get`, `patch`.
//!
//! Every replica must run with the same flags (names, validities), else they undo each other's
//! work. Two replicas regenerating at once can leave the loser's CA in the bundle (its key
//! discarded) until that CA expires: harmless, and it happens only when no usable Secret exists.
//!
//! The webhook configurations are re-checked every minute, so a `helm upgrade` that resets their
//! `caBundle` is repaired; a configuration that does not exist yet is retried with backoff while
//! the server keeps serving.
//!
//! Here is the part that talks to the API server; the decision of what to write is the pure
//! planner in `pki::plan`. `args`: the flags; `observe`: the Secret's data in the planner's terms;
//! `manager`: one reconcile (read, plan, write one step, repeat); `api`: the reads and the guarded
//! writes; `watch`: the Secret watch and the loop that re-checks.

mod api;
mod args;
mod manager;
mod observe;
mod watch;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use kube::Client;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::pki::{CertError, CertResolver, TlsError};
pub use args::SelfManagedArgs;
use manager::{FIRST_RETRY, Manager, RECHECK};

/// Attempts of the first reconcile before `start` fails.
const START_ATTEMPTS: u32 = 5;

/// Why self-managed certificates could not start or keep up.
#[derive(Debug, thiserror::Error)]
pub enum SelfManagedError {
    /// Inconsistent flags.
    #[error("{flag}: {message}")]
    Args {
        /// The flag at fault.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// rcgen failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// An API call failed (other than a lost race, which is retried).
    #[error("{action}: {error}")]
    Api {
        /// What was being done.
        action: String,
        /// Why it failed.
        error: kube::Error,
    },
    /// Writes kept racing with another writer.
    #[error("Secret {0}: still changing after many writes; another writer with other flags?")]
    Unsettled(String),
    /// The Secret's CA signs certificates that do not chain to it (not made by this program).
    #[error(
        "Secret {0}: its CA cannot issue certificates that chain to it; delete the Secret to start over"
    )]
    ForeignCa(String),
    /// The Secret's pair, which the plan found trusted, cannot be served.
    #[error("Secret {secret}: {error}")]
    Pair {
        /// The Secret.
        secret: String,
        /// Why.
        error: TlsError,
    },
}

/// Not-after dates for metrics (`carto_wi_tls_cert_not_after_seconds`).
#[derive(Debug, Default)]
pub struct CertStatus {
    serving: AtomicI64,
    ca: AtomicI64,
}

impl CertStatus {
    /// End of validity (unix seconds) of the serving certificate served now.
    pub fn serving_not_after(&self) -> Option<i64> {
        Some(self.serving.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }

    /// End of validity (unix seconds) of the CA that signs.
    pub fn ca_not_after(&self) -> Option<i64> {
        Some(self.ca.load(Ordering::Relaxed)).filter(|&t| t != 0)
    }
}

/// The running component: it keeps the Secret, the webhooks' `caBundle` and the served pair
/// current until dropped.
#[derive(Debug)]
pub struct SelfManaged {
    status: Arc<CertStatus>,
    task: JoinHandle<()>,
}

impl Drop for SelfManaged {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SelfManaged {
    /// Bring the Secret and the webhooks' `caBundle` up to date, serve the Secret's pair through
    /// `resolver`, and keep doing so in the background. Returns once `resolver` serves the
    /// Secret's pair: the listener is ready.
    pub async fn start(
        client: Client,
        namespace: &str,
        args: &SelfManagedArgs,
        resolver: Arc<CertResolver>,
    ) -> Result<Self, SelfManagedError> {
        let manager = Manager::new(client, namespace, args, resolver)?;
        let span =
            tracing::info_span!("certs", secret = %format!("{namespace}/{}", args.cert_secret));
        let first = first_reconcile(&manager).instrument(span.clone()).await?;
        span.in_scope(|| manager.serve_pair(&first.secret))?;
        let status = manager.status.clone();
        let task = tokio::spawn(manager.run(first).instrument(span));
        Ok(Self { status, task })
    }

    /// The not-after dates, for metrics.
    pub fn status(&self) -> Arc<CertStatus> {
        self.status.clone()
    }
}

/// The first reconcile, retried with backoff up to [`START_ATTEMPTS`] times.
async fn first_reconcile(manager: &Manager) -> Result<manager::Settled, SelfManagedError> {
    let mut backoff = Backoff::doubling(FIRST_RETRY, RECHECK);
    let mut attempt = 1;
    loop {
        match manager.reconcile().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < START_ATTEMPTS => {
                tracing::warn!(error = %e, "self-managed certificates: retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
