//! Leader election: one replica reconciles at a time, elected by a `coordination.k8s.io/v1`
//! Lease (kube-lease-manager). Losing the Lease stops reconciling, never admission.

use std::future::Future;
use std::time::Duration;

use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tracing::Instrument;

use super::metrics::ClusterMetrics;
use crate::backoff::Backoff;

/// Seconds a Lease stays valid without renewal; a replica that dies is replaced after this.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry the holder renews.
const GRACE_SECONDS: u64 = 5;

/// The Lease manager's task: it ends once the Lease is released.
type LeaseTask =
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

/// Where and as whom to take the Lease.
#[derive(Debug, Clone)]
pub struct Election {
    /// The Lease's namespace (the webhook's).
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
    /// This replica's name in the Lease.
    pub identity: String,
}

/// The Lease's manager, retried with backoff while the API refuses (e.g. RBAC not bound yet).
async fn lease_manager(
    client: &kube::Client,
    election: &Election,
) -> kube_lease_manager::LeaseManager {
    let mut backoff = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let built = LeaseManagerBuilder::new(client.clone(), &election.lease)
            .with_namespace(&election.namespace)
            .with_parameters(LeaseParams::new(
                &election.identity,
                LEASE_SECONDS,
                GRACE_SECONDS,
            ))
            .build()
            .await;
        match built {
            Ok(m) => return m,
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(lease = %election.lease, error = %e, retry_in = ?delay, "cannot take part in leader election yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// While `until` has not completed: wait to be elected, then run `lead(lost)` where `lost`
/// completes when the Lease is lost; repeat. The Lease is released on the way out. The election
/// runs in a `leader` span; `lead` runs outside it (the reconciler has spans of its own).
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    election: Election,
    metrics: ClusterMetrics,
    until: impl Future<Output = ()>,
    mut lead: F,
) where
    F: FnMut(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = ()>,
{
    let span = tracing::info_span!(
        "leader",
        lease = %format!("{}/{}", election.namespace, election.lease)
    );
    let mut until = std::pin::pin!(until);
    let manager = tokio::select! {
        () = &mut until => return,
        m = lease_manager(&client, &election).instrument(span.clone()) => m,
    };
    let (rx, task) = manager.watch().instrument(span.clone()).await;
    let elect_and_lead = async {
        let mut rx = rx;
        loop {
            let Some(lost) = elected(&mut rx, &election, &metrics)
                .instrument(span.clone())
                .await
            else {
                return;
            };
            lead(lost).await;
            span.in_scope(|| {
                metrics.leader(false);
                tracing::info!(lease = %election.lease, "lost the Lease: reconciling stopped");
            });
        }
    };
    tokio::select! {
        () = &mut until => {}
        () = elect_and_lead => {}
    }
    metrics.leader(false);
    release(task, &election).instrument(span).await;
}

/// Wait until this replica holds the Lease; the future that completes when it is lost. `None`
/// when the election stopped.
async fn elected(
    rx: &mut tokio::sync::watch::Receiver<bool>,
    election: &Election,
    metrics: &ClusterMetrics,
) -> Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>> {
    if rx.wait_for(|leader| *leader).await.is_err() {
        tracing::warn!("leader election stopped");
        return None;
    }
    metrics.leader(true);
    tracing::info!(lease = %election.lease, identity = %election.identity, "elected: reconciling");
    let mut lost_rx = rx.clone();
    Some(Box::pin(async move {
        let _ = lost_rx.wait_for(|leader| !*leader).await;
    }))
}

/// The receivers are gone: the manager releases the Lease and ends.
async fn release(task: LeaseTask, election: &Election) {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => tracing::info!(lease = %election.lease, "Lease released"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "cannot release the Lease; it expires on its own")
        }
        _ => tracing::warn!("the Lease was not released in time; it expires on its own"),
    }
}
