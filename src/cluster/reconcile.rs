//! The reconciler, run by the elected replica: it brings existing ServiceAccounts and
//! Deployments to the config that resolves for their namespace, with the same core as admission.
//! Objects are listed page by page and never cached; each patch is guarded by the object's
//! resourceVersion, so it applies to exactly the version it was computed from.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::Value;
use tracing::Instrument;

use super::events::{BINDING_REQUIRED, Events, INJECTED, INVALID_CONFIG};
use super::metrics::{ClusterMetrics, TargetState};
use super::queue::{Work, WorkQueue};
use super::state::SharedWatched;
use super::{Error, Result, decide};
use crate::admission::Kind;
use crate::config::{ConfigOrigin, ConfigSnapshot, Resolved, WorkloadIdentityConfig};
use crate::settings::Settings;

/// Objects per page when listing Deployments and ServiceAccounts.
const PAGE: u32 = 100;
/// Attempts at one object when it keeps changing under the reconciler.
const ATTEMPTS: usize = 3;
/// Longest wait before retrying a failed namespace.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Field manager of the reconciler's patches.
const FIELD_MANAGER: &str = "carto-wi-webhook";

/// Everything a reconcile needs.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Events, posted once each.
    pub events: Events,
    /// Cluster metrics.
    pub metrics: ClusterMetrics,
    /// Policy settings (the same as admission's).
    pub settings: Settings,
    /// The snapshot in force (the one admission reads).
    pub snapshot: Box<dyn Fn() -> Arc<ConfigSnapshot> + Send + Sync>,
    /// What the watches saw (ConfigMap metadata for Events).
    pub watched: SharedWatched,
    limiter: tokio::sync::Mutex<tokio::time::Interval>,
    counts: Mutex<BTreeMap<String, Counts>>,
}

/// Targets by kind and state in one namespace.
#[derive(Debug, Default, Clone, Copy)]
struct Counts([[usize; 4]; 2]);

impl Counts {
    fn add(&mut self, kind: Kind, state: TargetState) {
        let k = usize::from(kind == Kind::Deployment);
        let s = TargetState::ALL
            .iter()
            .position(|x| *x == state)
            .unwrap_or(0);
        self.0[k][s] += 1;
    }
}

impl Context {
    /// A context that makes at most `qps` API requests per second.
    pub fn new(
        client: kube::Client,
        events: Events,
        metrics: ClusterMetrics,
        settings: Settings,
        snapshot: impl Fn() -> Arc<ConfigSnapshot> + Send + Sync + 'static,
        watched: SharedWatched,
        qps: u32,
    ) -> Self {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / qps.max(1));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            client,
            events,
            metrics,
            settings,
            snapshot: Box::new(snapshot),
            watched,
            limiter: tokio::sync::Mutex::new(interval),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Wait for the rate limiter before an API request.
    async fn throttle(&self) {
        self.limiter.lock().await.tick().await;
    }

    fn api<K: kube::Resource<DynamicType = ()>>(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &ApiResource::erase::<K>(&()),
        )
    }

    fn store_counts(&self, namespace: &str, counts: Option<Counts>) {
        let mut all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts {
            Some(c) => all.insert(namespace.to_owned(), c),
            None => all.remove(namespace),
        };
        let mut total = Counts::default();
        for c in all.values() {
            for k in 0..2 {
                for s in 0..4 {
                    total.0[k][s] += c.0[k][s];
                }
            }
        }
        drop(all);
        for (k, kind) in ["ServiceAccount", "Deployment"].into_iter().enumerate() {
            for (s, state) in TargetState::ALL.into_iter().enumerate() {
                self.metrics.targets(kind, state, total.0[k][s]);
            }
        }
    }

    fn retain_counts(&self, keep: &std::collections::HashSet<String>) {
        let stale: Vec<String> = {
            let all = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            all.keys()
                .filter(|ns| !keep.contains(*ns))
                .cloned()
                .collect()
        };
        for ns in stale {
            self.store_counts(&ns, None);
        }
    }
}

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
    let mut failures: HashMap<Work, u32> = HashMap::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let work = tokio::select! {
            () = &mut stop => break,
            _ = resync_tick.tick() => { queue.add(Work::Everything); continue; }
            w = queue.next() => w,
        };
        ctx.metrics.queue_len(queue.len());
        match reconcile(&work, &ctx, &queue).await {
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
    failures: &mut HashMap<Work, u32>,
) {
    ctx.metrics.error(error.reason());
    let n = failures.entry(work.clone()).or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n).min(9)).min(MAX_BACKOFF);
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
    let watched = ctx.watched.load();
    let own: std::collections::HashSet<String> = watched
        .config_map_namespaces()
        .filter(|ns| *ns != watched.own_namespace())
        .map(str::to_owned)
        .collect();
    let api: Api<ServiceAccount> = Api::all(ctx.client.clone());
    let mut lp = ListParams::default()
        .fields(&format!("metadata.name={}", ctx.settings.service_account))
        .limit(PAGE);
    let mut namespaces = std::collections::HashSet::new();
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
    if snapshot.is_opted_out(ns) {
        ctx.store_counts(ns, None);
        return Ok(());
    }
    let resolved = snapshot.resolve(ns);
    if let Resolved::Broken(problems, origin) = resolved {
        report_invalid_config(ns, origin, problems.len(), ctx).await?;
    }
    let mut counts = Counts::default();
    // One object that cannot be patched does not hold the others back: the first error is
    // returned once the namespace has been gone through (and the namespace retried).
    let mut first_error = None;
    if let Err(e) = reconcile_service_account(ns, &snapshot, ctx, &mut counts).await {
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
                reconcile_object(Kind::Deployment, &api, d, ns, &snapshot, ctx, &mut counts).await;
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
    snapshot: &ConfigSnapshot,
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
    let state = reconcile_object(Kind::ServiceAccount, &api, sa, ns, snapshot, ctx, counts).await?;
    if let (Some(state), Resolved::Config(config, _)) = (state, snapshot.resolve(ns))
        && matches!(state, TargetState::Compliant | TargetState::Drifted)
    {
        post_binding_required(&reference, ns, config, ctx).await?;
    }
    Ok(())
}

/// Patch one object if it differs from its config; returns its state (`None`: not a target).
async fn reconcile_object(
    kind: Kind,
    api: &Api<DynamicObject>,
    mut obj: DynamicObject,
    ns: &str,
    snapshot: &ConfigSnapshot,
    ctx: &Context,
    counts: &mut Counts,
) -> Result<Option<TargetState>> {
    for attempt in 1..=ATTEMPTS {
        let value = object_value(kind, &mut obj)?;
        let view = decide::view(&value).map_err(|e| Error::Encode {
            kind: kind.as_str(),
            source: e,
        })?;
        if !decide::is_target(kind, &view, &ctx.settings) {
            return Ok(None);
        }
        let state = match snapshot.resolve(ns) {
            Resolved::None => Some(TargetState::NoConfig),
            Resolved::Broken(..) => Some(TargetState::BrokenConfig),
            Resolved::Config(..) => None,
        };
        if let Some(state) = state {
            counts.add(kind, state);
            return Ok(Some(state));
        }
        let decision = decide::mutate(kind, &view, ns, snapshot, &ctx.settings);
        let Some(patch) = decision.patch else {
            counts.add(kind, TargetState::Compliant);
            return Ok(Some(TargetState::Compliant));
        };
        let name = obj.metadata.name.clone().unwrap_or_default();
        let rv = obj.metadata.resource_version.clone().unwrap_or_default();
        ctx.throttle().await;
        match api
            .patch(
                &name,
                &patch_params(),
                &Patch::Json::<()>(guarded(patch, &rv)),
            )
            .await
        {
            Ok(patched) => {
                ctx.metrics.action(kind.as_str(), "patched");
                let note = injected_note(kind, ns, snapshot);
                tracing::info!(kind = kind.as_str(), namespace = ns, name = %name, "patched to the resolved config");
                ctx.events
                    .post(
                        &object_ref(kind, &patched),
                        EventType::Normal,
                        INJECTED,
                        note,
                    )
                    .await
                    .map_err(|e| Error::PostEvent {
                        reason: INJECTED,
                        source: Box::new(e),
                    })?;
                // It was drifted; it matches its config now.
                counts.add(kind, TargetState::Compliant);
                return Ok(Some(TargetState::Drifted));
            }
            Err(e) if is_conflict(&e) && attempt < ATTEMPTS => {
                ctx.metrics.action(kind.as_str(), "conflict_retry");
                tracing::debug!(kind = kind.as_str(), namespace = ns, name = %name, "changed since read: reading it again");
                ctx.throttle().await;
                obj = api.get(&name).await.map_err(|e| Error::Get {
                    kind: kind.as_str(),
                    namespace: ns.to_owned(),
                    name: name.clone(),
                    source: Box::new(e),
                })?;
            }
            Err(source) => {
                return Err(Error::Patch {
                    kind: kind.as_str(),
                    namespace: ns.to_owned(),
                    name,
                    source: Box::new(source),
                });
            }
        }
    }
    unreachable!("the last attempt returns")
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// The object as JSON for the core (list items come without apiVersion and kind).
fn object_value(kind: Kind, obj: &mut DynamicObject) -> Result<Value> {
    obj.metadata.managed_fields = None;
    if obj.types.is_none() {
        obj.types = Some(kube::api::TypeMeta {
            api_version: if kind == Kind::Deployment {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
            kind: kind.as_str().into(),
        });
    }
    serde_json::to_value(&*obj).map_err(|e| Error::Encode {
        kind: kind.as_str(),
        source: e,
    })
}

/// The patch, applied only if the object still has resourceVersion `rv`.
fn guarded(patch: json_patch::Patch, rv: &str) -> json_patch::Patch {
    let mut ops = Vec::with_capacity(patch.0.len() + 1);
    ops.push(PatchOperation::Test(TestOperation {
        path: PointerBuf::from_tokens(["metadata", "resourceVersion"]),
        value: Value::String(rv.to_owned()),
    }));
    ops.extend(patch.0);
    json_patch::Patch(ops)
}

/// A failed `test` (the object changed since it was read) or a plain conflict.
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

fn object_ref(kind: Kind, obj: &DynamicObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(
            if kind == Kind::Deployment {
                "apps/v1"
            } else {
                "v1"
            }
            .into(),
        ),
        kind: Some(kind.as_str().into()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn injected_note(kind: Kind, ns: &str, snapshot: &ConfigSnapshot) -> String {
    let (hash, from) = match snapshot.resolve(ns) {
        Resolved::Config(c, ConfigOrigin::Namespace) => {
            (c.hash.clone(), "the namespace's ConfigMap")
        }
        Resolved::Config(c, ConfigOrigin::Default) => {
            (c.hash.clone(), "the cluster default ConfigMap")
        }
        _ => (String::new(), "?"),
    };
    match kind {
        Kind::ServiceAccount => {
            format!("annotated with the Google service account from {from} (config-hash {hash})")
        }
        _ => format!("Workload Identity env vars set from {from} (config-hash {hash}); pods roll"),
    }
}

async fn post_binding_required(
    sa: &ObjectReference,
    ns: &str,
    config: &WorkloadIdentityConfig,
    ctx: &Context,
) -> Result<()> {
    let command = config.iam_binding(ns, &ctx.settings.service_account);
    let note = format!(
        "grant the IAM binding once (config-hash {}): {command}",
        config.hash
    );
    ctx.throttle().await;
    ctx.events
        .post_once(sa, EventType::Normal, BINDING_REQUIRED, note)
        .await
        .map_err(|e| Error::PostEvent {
            reason: BINDING_REQUIRED,
            source: Box::new(e),
        })
}

/// A Warning Event on the invalid ConfigMap that applies to `ns` (once per version of it).
async fn report_invalid_config(
    ns: &str,
    origin: ConfigOrigin,
    problems: usize,
    ctx: &Context,
) -> Result<()> {
    let watched = ctx.watched.load();
    let cm_ns = match origin {
        ConfigOrigin::Namespace => ns,
        ConfigOrigin::Default => watched.own_namespace(),
    };
    let Some(seen) = watched.config_map(cm_ns) else {
        return Ok(());
    };
    let crate::config::ConfigEntry::Invalid(list) = &seen.entry else {
        return Ok(());
    };
    let text: Vec<String> = list.iter().map(ToString::to_string).collect();
    let mut note = format!(
        "{problems} problem(s), Workload Identity not applied: {}",
        text.join("; ")
    );
    truncate(&mut note, 1000);
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(ctx.settings.config_map.clone()),
        namespace: Some(cm_ns.to_owned()),
        uid: Some(seen.uid.clone()),
        resource_version: Some(seen.resource_version.clone()),
        ..ObjectReference::default()
    };
    ctx.throttle().await;
    ctx.events
        .post_once(&reference, EventType::Warning, INVALID_CONFIG, note)
        .await
        .map_err(|e| Error::PostEvent {
            reason: INVALID_CONFIG,
            source: Box::new(e),
        })
}

/// Cut `s` to at most `max` bytes on a character boundary (an Event note is at most 1 kB).
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
}
