//! One object: compare it with its config through the core, and patch it when it differs, guarded
//! by its resourceVersion (re-read and retried when it changed meanwhile).

use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, TestOperation};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::Value;

use super::super::events::INJECTED;
use super::super::metrics::TargetState;
use super::super::{Error, Result, decide};
use super::context::{Context, Counts};
use super::report::injected_note;
use crate::admission::Kind;
use crate::config::{ConfigSnapshot, Resolved};

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

/// Patch one object if it differs from its config; returns its state (`None`: not a target).
/// `Drifted` means it differed and was patched (it is tallied as compliant).
pub(super) async fn reconcile_object(
    kind: Kind,
    api: &Api<DynamicObject>,
    mut obj: DynamicObject,
    ns: &str,
    snapshot: &ConfigSnapshot,
    ctx: &Context,
    counts: &mut Counts,
) -> Result<Option<TargetState>> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    for attempt in 1..=ATTEMPTS {
        let patch = match assess(kind, &mut obj, ns, snapshot, ctx)? {
            Assessment::NotTarget => return Ok(None),
            Assessment::Settled(state) => {
                counts.add(kind, state);
                return Ok(Some(state));
            }
            Assessment::Drifted(patch) => patch,
        };
        match patch_guarded(api, &obj, patch, ctx).await {
            Ok(patched) => {
                announce_injected(kind, &patched, ns, snapshot, ctx).await?;
                counts.add(kind, TargetState::Compliant);
                return Ok(Some(TargetState::Drifted));
            }
            Err(e) if is_conflict(&e) && attempt < ATTEMPTS => {
                ctx.metrics.action(kind.as_str(), "conflict_retry");
                tracing::debug!(kind = kind.as_str(), namespace = ns, name = %name, "changed since read: reading it again");
                obj = reread(kind, api, &name, ns, ctx).await?;
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

/// Run the object through the core: is it a target, and what would mutation change?
fn assess(
    kind: Kind,
    obj: &mut DynamicObject,
    ns: &str,
    snapshot: &ConfigSnapshot,
    ctx: &Context,
) -> Result<Assessment> {
    let value = object_value(kind, obj)?;
    let view = decide::view(&value).map_err(|e| Error::Encode {
        kind: kind.as_str(),
        source: e,
    })?;
    if !decide::is_target(kind, &view, &ctx.settings) {
        return Ok(Assessment::NotTarget);
    }
    Ok(match snapshot.resolve(ns) {
        Resolved::None => Assessment::Settled(TargetState::NoConfig),
        Resolved::Broken(..) => Assessment::Settled(TargetState::BrokenConfig),
        Resolved::Config(..) => {
            match decide::mutate(kind, &view, ns, snapshot, &ctx.settings).patch {
                Some(patch) => Assessment::Drifted(patch),
                None => Assessment::Settled(TargetState::Compliant),
            }
        }
    })
}

/// Apply `patch` to `obj` if it is still at the resourceVersion it was read at.
async fn patch_guarded(
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    patch: json_patch::Patch,
    ctx: &Context,
) -> Result<DynamicObject, kube::Error> {
    let name = obj.metadata.name.as_deref().unwrap_or_default();
    let rv = obj.metadata.resource_version.as_deref().unwrap_or_default();
    ctx.throttle().await;
    api.patch(
        name,
        &patch_params(),
        &Patch::Json::<()>(guarded(patch, rv)),
    )
    .await
}

/// Count the change, log it, and post `WorkloadIdentityInjected` on the patched object.
async fn announce_injected(
    kind: Kind,
    patched: &DynamicObject,
    ns: &str,
    snapshot: &ConfigSnapshot,
    ctx: &Context,
) -> Result<()> {
    ctx.metrics.action(kind.as_str(), "patched");
    let name = patched.metadata.name.as_deref().unwrap_or_default();
    tracing::info!(
        kind = kind.as_str(),
        namespace = ns,
        name,
        "patched to the resolved config"
    );
    let note = injected_note(kind, ns, snapshot);
    ctx.throttle().await;
    ctx.events
        .post(
            &object_ref(kind, patched),
            EventType::Normal,
            INJECTED,
            note,
        )
        .await
        .map_err(|e| Error::PostEvent {
            reason: INJECTED,
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

/// A failed `test` (the object changed since it was read) or a plain conflict.
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 422)
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
