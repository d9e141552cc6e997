//! The reconciler, run by the elected replica: it brings existing ServiceAccounts and
//! Deployments to the config that resolves for their namespace, with the same core as admission.
//! Objects are listed page by page and never cached; each patch is guarded by the object's
//! resourceVersion, so it applies to exactly the version it was computed from.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams};
use tracing::Instrument;

use super::metrics::TargetState;
use super::queue::{Work, WorkQueue};
use super::{Error, Result};
use crate::admission::Kind;
use crate::backoff::Backoff;
use crate::config::Resolved;

mod apply;
mod context;
mod report;

use apply::{Outcome, object_ref, reconcile_object};
pub use context::Context;
use context::Counts;
use report::{NamespaceConfig, post_binding_required, report_invalid_config};

/// Objects per page when listing Deployments and ServiceAccounts. A page is read whole (its JSON
/// text, then the objects parsed from it), so the reconciler's memory peaks at about twice the
/// page's size: small pages keep that bounded whatever tenants store in their objects (10 × the
/// largest object the API stores, ~1.5 MB, is ~15 MB of JSON), for one list request per 10
/// objects.
const PAGE: u32 = 10;
/// First wait before retrying a failed namespace.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait before retrying a failed namespace.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Reconcile until `stop` completes: a full pass first, then what the watches queue, and a full
/// pass every `resync`.
pub async fn run(
    ctx: Arc<Context>,
    queue: Arc<WorkQueue>,
    resync: Duration,
    stop: impl Future<Output = ()>,
) {
    queue.clear();
    queue.add(Work::Everything);
    let mut resync_tick = tokio::time::interval_at(tokio::time::Instant::now() + resync, resync);
    resync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures: HashMap<Work, Backoff> = HashMap::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let work = tokio::select! {
            () = &mut stop => break,
            _ = resync_tick.tick() => { queue.add(Work::Everything); continue; }
            w = queue.next() => w,
        };
        ctx.metrics.queue_len(queue.len());
        let result = reconcile(&work, &ctx, &queue).await;
        queue.done(&work);
        match result {
            Ok(()) => {
                failures.remove(&work);
            }
            Err(e) => error_policy(work, &e, &ctx, &queue, &mut failures),
        }
    }
}

/// Count the failure and retry the work later, with exponential backoff.
fn error_policy(
    work: Work,
    error: &Error,
    ctx: &Context,
    queue: &Arc<WorkQueue>,
    failures: &mut HashMap<Work, Backoff>,
) {
    ctx.metrics.error(error.reason());
    let delay = failures
        .entry(work.clone())
        .or_insert_with(|| Backoff::doubling(FIRST_BACKOFF, MAX_BACKOFF))
        .next_delay();
    tracing::warn!(work = ?work, error = %error, retry_in = ?delay, "reconcile failed");
    queue.add_after(work, delay);
}

async fn reconcile(work: &Work, ctx: &Context, queue: &WorkQueue) -> Result<()> {
    match work {
        Work::Everything => fan_out(ctx, queue, true).await,
        Work::DefaultUsers => fan_out(ctx, queue, false).await,
        Work::Namespace(ns) => {
            let span = tracing::info_span!("reconcile", namespace = %ns);
            reconcile_namespace(ns, ctx).instrument(span).await
        }
    }
}

/// Queue every namespace holding the target ServiceAccount (one paged, name-selected list across
/// the cluster), and with `with_own_config` every namespace with its own ConfigMap; without it,
/// only those that use the default.
async fn fan_out(ctx: &Context, queue: &WorkQueue, with_own_config: bool) -> Result<()> {
    let own: HashSet<String> = (ctx.snapshot)().namespaces().map(str::to_owned).collect();
    let api: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let mut lp = ListParams::default()
        .fields(&format!("metadata.name={}", ctx.settings.service_account))
        .limit(PAGE);
    let mut namespaces = HashSet::new();
    loop {
        ctx.throttle().await;
        let page = api
            .list_metadata(&lp)
            .await
            .map_err(|e| Error::ListServiceAccounts {
                source: Box::new(e),
            })?;
        namespaces.extend(
            page.items
                .into_iter()
                .filter_map(|sa| sa.metadata.namespace),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    if with_own_config {
        namespaces.extend(own.iter().cloned());
    }
    namespaces.retain(|ns| !ctx.is_excluded(ns));
    if with_own_config {
        ctx.retain_counts(&namespaces);
    }
    let mut queued = 0;
    for ns in &namespaces {
        if with_own_config || !own.contains(ns) {
            queue.add(Work::Namespace(ns.clone()));
            queued += 1;
        }
    }
    tracing::info!(
        namespaces = queued,
        everything = with_own_config,
        "reconcile pass queued"
    );
    Ok(())
}

/// Bring the target ServiceAccount and Deployments of one namespace to its config.
async fn reconcile_namespace(ns: &str, ctx: &Context) -> Result<()> {
    let snapshot = (ctx.snapshot)();
    if ctx.is_excluded(ns) {
        tracing::debug!("excluded namespace: left alone");
        ctx.store_counts(ns, None);
        return Ok(());
    }
    if snapshot.is_opted_out(ns) {
        ctx.store_counts(ns, None);
        return Ok(());
    }
    // Resolved once: every object of the namespace is brought to this config.
    let config = NamespaceConfig::of(ns, &snapshot);
    if let Resolved::Broken(problems, _) = config.resolved() {
        report_invalid_config(config, problems.len(), ctx).await?;
    }
    let mut counts = Counts::default();
    // One object that cannot be patched does not hold the others back: the first error is
    // returned once the namespace has been gone through (and the namespace retried).
    let mut first_error = None;
    if let Err(e) = reconcile_service_account(ns, config, ctx, &mut counts).await {
        counts.add(Kind::ServiceAccount, TargetState::Drifted);
        first_error = Some(e);
    }
    let api = ctx.api::<Deployment>(ns);
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        ctx.throttle().await;
        let page = api.list(&lp).await.map_err(|e| Error::ListDeployments {
            namespace: ns.to_owned(),
            source: Box::new(e),
        })?;
        for d in page.items {
            let result =
                reconcile_object(Kind::Deployment, &api, d, ns, config, ctx, &mut counts).await;
            if let Err(e) = result {
                counts.add(Kind::Deployment, TargetState::Drifted);
                first_error.get_or_insert(e);
            }
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    ctx.store_counts(ns, Some(counts));
    ctx.metrics.reconciled();
    first_error.map_or(Ok(()), Err)
}

async fn reconcile_service_account(
    ns: &str,
    config: NamespaceConfig<'_>,
    ctx: &Context,
    counts: &mut Counts,
) -> Result<()> {
    let api = ctx.api::<ServiceAccount>(ns);
    ctx.throttle().await;
    let name = &ctx.settings.service_account;
    let sa = api
        .get_opt(name)
        .await
        .map_err(|e| Error::GetServiceAccount {
            namespace: ns.to_owned(),
            source: Box::new(e),
        })?;
    let Some(sa) = sa else { return Ok(()) };
    let reference = object_ref(Kind::ServiceAccount, &sa);
    let outcome = reconcile_object(Kind::ServiceAccount, &api, sa, ns, config, ctx, counts).await?;
    if let Resolved::Config(resolved, _) = config.resolved()
        && matches!(
            outcome,
            Outcome::Settled(TargetState::Compliant) | Outcome::Patched
        )
    {
        post_binding_required(&reference, ns, resolved, ctx).await?;
    }
    Ok(())
}
