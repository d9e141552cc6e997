//! One object: compare it with its config through the core, and patch it when it differs, guarded
//! by its resourceVersion (re-read and retried when it changed meanwhile).

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::Value;

use super::super::events::{INJECTED, PATCH_REFUSED};
use super::super::metrics::TargetState;
use super::super::{Error, Result};
use super::context::{Context, Counts};
use super::report::{NamespaceConfig, injected_note, refused_note, resolved_config_map};
use crate::admission::view::Object;
use crate::admission::{Kind, mutate_with_config, target};
use crate::config::Resolved;

/// Attempts at one object when it keeps changing under the reconciler.
const ATTEMPTS: usize = 3;
/// Field manager of the reconciler's patches.
const FIELD_MANAGER: &str = "carto-wi-webhook";

/// What the core says of one object.
enum Assessment {
    /// Not one of the webhook's targets.
    NotTarget,
    /// A target in this state, with nothing to write.
    Settled(TargetState),
    /// A target that differs from its config: this patch brings it there.
    Drifted(json_patch::Patch),
}

/// What became of one object.
pub(super) enum Outcome {
    /// Not one of the webhook's targets.
    NotTarget,
    /// A target left as it is, in this state.
    Settled(TargetState),
    /// A target that differed and was patched.
    Patched,
    /// A target whose patch the API server refused for good (too large, invalid): recorded, and
    /// tried again only on the next config change or resync.
    Refused,
}

/// Patch one object if it differs from its config. The object is dropped once assessed: only
/// its name, resourceVersion and the patch are kept while the patch is sent.
pub(super) async fn reconcile_object(
    kind: Kind,
    api: &Api<DynamicObject>,
    obj: DynamicObject,
    ns: &str,
    config: NamespaceConfig<'_>,
    ctx: &Context,
    counts: &mut Counts,
) -> Result<Outcome> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut next = Some(obj);
    for attempt in 1..=ATTEMPTS {
        let obj = match next.take() {
            Some(obj) => obj,
            None => reread(kind, api, &name, ns, ctx).await?,
        };
        let target = Target::of(kind, &obj);
        let patch = match assess(kind, obj, ns, config.resolved(), ctx)? {
            Assessment::NotTarget => return Ok(Outcome::NotTarget),
            Assessment::Settled(state) => {
                counts.add(kind, state);
                return Ok(Outcome::Settled(state));
            }
            Assessment::Drifted(patch) => patch,
        };
        match patch_guarded(api, &target, patch, ctx).await {
            Ok(()) => {
                announce_injected(&target, ns, config, ctx).await?;
                counts.add(kind, TargetState::Compliant);
                return Ok(Outcome::Patched);
            }
            Err(e) if is_conflict(&e) && attempt < ATTEMPTS => {
                ctx.metrics.action(kind.as_str(), "conflict_retry");
                tracing::debug!(kind = kind.as_str(), namespace = ns, name = %name, "changed since read: reading it again");
            }
            Err(kube::Error::Api(status)) if is_refused(&status) => {
                report_refused(&target, &status, ns, config, ctx).await?;
                counts.add(kind, TargetState::Drifted);
                return Ok(Outcome::Refused);
            }
            Err(e) => {
                return Err(Error::Patch {
                    kind: kind.as_str(),
                    namespace: ns.to_owned(),
                    name,
                    source: Box::new(e),
                });
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// What is kept of an object while its patch is sent: enough to guard the patch and to refer
/// to the object in Events.
pub(super) struct Target {
    kind: Kind,
    reference: ObjectReference,
}

impl Target {
    pub(super) fn of(kind: Kind, obj: &DynamicObject) -> Self {
        Self {
            kind,
            reference: object_ref(kind, obj),
        }
    }

    fn name(&self) -> &str {
        self.reference.name.as_deref().unwrap_or_default()
    }
}

/// Run the object through the core (the same decisions as admission): is it a target, and what
/// would mutation change under the config `resolved` for its namespace?
fn assess(
    kind: Kind,
    mut obj: DynamicObject,
    ns: &str,
    resolved: Resolved<'_>,
    ctx: &Context,
) -> Result<Assessment> {
    let value = object_value(kind, &mut obj)?;
    drop(obj);
    let view = Object::from_value(&value).map_err(|e| Error::Encode {
        kind: kind.as_str(),
        source: e,
    })?;
    if !target::is_target(kind, view.name(), &view, &ctx.settings) {
        return Ok(Assessment::NotTarget);
    }
    Ok(match resolved {
        Resolved::None => Assessment::Settled(TargetState::NoConfig),
        Resolved::Broken(..) => Assessment::Settled(TargetState::BrokenConfig),
        Resolved::Config(..) => {
            match mutate_with_config(kind, &view, ns, resolved, &ctx.settings).patch {
                Some(patch) => Assessment::Drifted(patch),
                None => Assessment::Settled(TargetState::Compliant),
            }
        }
    })
}

/// Apply `patch` to the object if it is still at the resourceVersion it was read at. The
/// patched object the API server sends back is not kept.
async fn patch_guarded(
    api: &Api<DynamicObject>,
    target: &Target,
    patch: json_patch::Patch,
    ctx: &Context,
) -> Result<(), kube::Error> {
    let rv = target
        .reference
        .resource_version
        .as_deref()
        .unwrap_or_default();
    ctx.throttle().await;
    api.patch(
        target.name(),
        &patch_params(),
        &Patch::Json::<()>(guarded(patch, rv)),
    )
    .await
    .map(drop)
}

/// Count the change, log it, and post `WorkloadIdentityInjected` on the patched object.
async fn announce_injected(
    target: &Target,
    ns: &str,
    config: NamespaceConfig<'_>,
    ctx: &Context,
) -> Result<()> {
    let kind = target.kind;
    ctx.metrics.action(kind.as_str(), "patched");
    tracing::info!(
        kind = kind.as_str(),
        namespace = ns,
        name = target.name(),
        "patched to the resolved config"
    );
    let note = injected_note(kind, config);
    ctx.throttle().await;
    ctx.events
        .post(&target.reference, EventType::Normal, INJECTED, note)
        .await
        .map_err(|e| Error::PostEvent {
            reason: INJECTED,
            source: Box::new(e),
        })
}

/// Count, log and post `WorkloadIdentityPatchRefused` (once per object, config and answer).
async fn report_refused(
    target: &Target,
    status: &kube::core::Status,
    ns: &str,
    config: NamespaceConfig<'_>,
    ctx: &Context,
) -> Result<()> {
    let kind = target.kind;
    ctx.metrics.action(kind.as_str(), "refused");
    tracing::warn!(
        kind = kind.as_str(),
        namespace = ns,
        name = target.name(),
        code = status.code,
        error = %status.message,
        "the API server refused the patch: left as it is until the next config change or resync"
    );
    let note = refused_note(status, config);
    let config_map = resolved_config_map(config, ctx);
    ctx.throttle().await;
    ctx.events
        .post_once_related(
            &target.reference,
            config_map.as_ref(),
            EventType::Warning,
            PATCH_REFUSED,
            note,
        )
        .await
        .map_err(|e| Error::PostEvent {
            reason: PATCH_REFUSED,
            source: Box::new(e),
        })
}

/// Read the object again after a conflict.
async fn reread(
    kind: Kind,
    api: &Api<DynamicObject>,
    name: &str,
    ns: &str,
    ctx: &Context,
) -> Result<DynamicObject> {
    ctx.throttle().await;
    api.get(name).await.map_err(|e| Error::Get {
        kind: kind.as_str(),
        namespace: ns.to_owned(),
        name: name.to_owned(),
        source: Box::new(e),
    })
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
            api_version: api_version(kind).into(),
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

/// A plain conflict, or our `test` of the resourceVersion failed (the object changed since it
/// was read; the API server answers 422 naming the tested path).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || (s.code == 422 && s.message.contains("/metadata/resourceVersion")))
}

/// An answer that sending the same patch again cannot change: the object would be too large
/// (413, or etcd's "request is too large" as a 500) or invalid (422, e.g. annotations over
/// their 256 KiB limit).
fn is_refused(s: &kube::core::Status) -> bool {
    s.code == 413 || s.code == 422 || (s.code == 500 && s.message.contains("too large"))
}

pub(super) fn object_ref(kind: Kind, obj: &DynamicObject) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version(kind).into()),
        kind: Some(kind.as_str().into()),
        name: obj.metadata.name.clone(),
        namespace: obj.metadata.namespace.clone(),
        uid: obj.metadata.uid.clone(),
        resource_version: obj.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

fn api_version(kind: Kind) -> &'static str {
    if kind == Kind::Deployment {
        "apps/v1"
    } else {
        "v1"
    }
}
