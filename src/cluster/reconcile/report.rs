//! The Events the reconciler posts beyond the patches themselves: the IAM binding to grant, and
//! the invalid ConfigMap that keeps a namespace from being configured.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::EventType;

use super::super::events::{BINDING_REQUIRED, INVALID_CONFIG};
use super::super::{Error, Result};
use super::context::Context;
use crate::admission::Kind;
use crate::config::{
    ConfigEntry, ConfigOrigin, ConfigSnapshot, Resolved, SeenConfigMap, WorkloadIdentityConfig,
};

/// The config of one namespace, resolved once per reconcile and passed down: what applies, and
/// the ConfigMap (as last seen) it comes from, which Events refer to.
#[derive(Debug, Clone, Copy)]
pub(super) struct NamespaceConfig<'s> {
    namespace: &'s str,
    source: Option<(&'s SeenConfigMap, ConfigOrigin)>,
}

impl<'s> NamespaceConfig<'s> {
    pub(super) fn of(namespace: &'s str, snapshot: &'s ConfigSnapshot) -> Self {
        Self {
            namespace,
            source: snapshot.resolve_seen(namespace),
        }
    }

    pub(super) fn resolved(&self) -> Resolved<'s> {
        Resolved::of(self.source)
    }
}

pub(super) fn injected_note(kind: Kind, config: NamespaceConfig<'_>) -> String {
    let (hash, from) = match config.resolved() {
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

/// Why a patch was refused, for its Warning Event (at most 1 kB).
pub(super) fn refused_note(status: &kube::core::Status, config: NamespaceConfig<'_>) -> String {
    let hash = match config.resolved() {
        Resolved::Config(c, _) => c.hash.clone(),
        _ => String::new(),
    };
    let mut note = format!(
        "the API server refused the Workload Identity patch (config-hash {hash}), left as it is until the next config change or resync: {} {}",
        status.code, status.message
    );
    truncate(&mut note, 1000);
    note
}

pub(super) async fn post_binding_required(
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

/// The ConfigMap (at the version last seen) whose config resolves for the namespace.
pub(super) fn resolved_config_map(
    config: NamespaceConfig<'_>,
    ctx: &Context,
) -> Option<ObjectReference> {
    config_map_ref(config, ctx).map(|(reference, _)| reference)
}

/// The ConfigMap that resolves for the namespace as last seen: a reference to it, and its entry.
fn config_map_ref<'s>(
    config: NamespaceConfig<'s>,
    ctx: &Context,
) -> Option<(ObjectReference, &'s ConfigEntry)> {
    let (seen, origin) = config.source?;
    let cm_ns = match origin {
        ConfigOrigin::Namespace => config.namespace,
        ConfigOrigin::Default => &ctx.own_namespace,
    };
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("ConfigMap".into()),
        name: Some(ctx.settings.config_map.clone()),
        namespace: Some(cm_ns.to_owned()),
        uid: Some(seen.uid.clone()),
        resource_version: Some(seen.resource_version.clone()),
        ..ObjectReference::default()
    };
    Some((reference, &seen.entry))
}

/// A Warning Event on the invalid ConfigMap that applies to the namespace (once per version).
pub(super) async fn report_invalid_config(
    config: NamespaceConfig<'_>,
    problems: usize,
    ctx: &Context,
) -> Result<()> {
    let Some((reference, ConfigEntry::Invalid(list))) = config_map_ref(config, ctx) else {
        return Ok(());
    };
    let text: Vec<String> = list.iter().map(ToString::to_string).collect();
    let mut note = format!(
        "{problems} problem(s), Workload Identity not applied: {}",
        text.join("; ")
    );
    truncate(&mut note, 1000);
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
