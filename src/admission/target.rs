//! What an object is to the webhook: which of our targets, and the parts of it we read.

use super::view::{Container, Field, Object, PodSpec};
use crate::config::ConfigSnapshot;
use crate::settings::{INJECT_LABEL, SKIP_CONTAINERS_ANNOTATION, Settings};

/// The kinds of object the webhook cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `v1/ServiceAccount`.
    ServiceAccount,
    /// `apps/v1/Deployment`.
    Deployment,
    /// `v1/ConfigMap`.
    ConfigMap,
    /// Anything else.
    Other,
}

impl Kind {
    /// Classify by API group and kind.
    pub fn of(group: &str, kind: &str) -> Self {
        match (group, kind) {
            ("", "ServiceAccount") => Self::ServiceAccount,
            ("apps", "Deployment") => Self::Deployment,
            ("", "ConfigMap") => Self::ConfigMap,
            _ => Self::Other,
        }
    }

    /// Name used in logs, metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ServiceAccount => "ServiceAccount",
            Self::Deployment => "Deployment",
            Self::ConfigMap => "ConfigMap",
            Self::Other => "Other",
        }
    }
}

/// The object of a CREATE or UPDATE, with its kind, name and namespace.
pub struct Subject<'o, 'a> {
    /// What kind of object.
    pub kind: Kind,
    /// The object.
    pub obj: &'o Object<'a>,
    /// Its name.
    pub name: &'o str,
    /// Its namespace.
    pub namespace: &'o str,
}

impl Subject<'_, '_> {
    /// Is this the target ServiceAccount, or a Deployment running as it, and not opted out
    /// (object label or namespace)?
    pub fn is_managed_target(&self, snapshot: &ConfigSnapshot, settings: &Settings) -> bool {
        let is_target = match self.kind {
            Kind::ServiceAccount => self.name == settings.service_account,
            Kind::Deployment => is_target_deployment(self.name, self.obj, settings),
            Kind::ConfigMap | Kind::Other => false,
        };
        is_target && !snapshot.is_opted_out(self.namespace) && !opted_out(self.obj)
    }
}

/// Does the object carry `workload-identity.carto.com/inject: "false"`?
pub fn opted_out(obj: &Object<'_>) -> bool {
    obj.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The ServiceAccount a pod template runs as (`serviceAccountName`, else the deprecated
/// `serviceAccount`; empty counts as unset).
pub fn pod_service_account<'p>(pod: &'p PodSpec<'_>) -> Option<&'p str> {
    [&pod.service_account_name, &pod.service_account]
        .into_iter()
        .filter_map(|f| f.str())
        .find(|s| !s.is_empty())
}

/// Is this Deployment one we inject: runs as the target ServiceAccount, and is on the allowlist?
pub fn is_target_deployment(name: &str, obj: &Object<'_>, settings: &Settings) -> bool {
    let runs_as_target = obj
        .pod_spec()
        .and_then(pod_service_account)
        .is_some_and(|sa| sa == settings.service_account);
    runs_as_target
        && (settings.deployments.is_empty() || settings.deployments.iter().any(|d| d == name))
}

/// Container names listed in `skip-containers` on the Deployment or its pod template.
pub fn skipped_containers<'o>(obj: &'o Object<'_>) -> Vec<&'o str> {
    let from_object = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION));
    let from_template = obj
        .template_meta()
        .and_then(|m| m.annotations.get())
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .and_then(Field::str);
    from_object
        .into_iter()
        .chain(from_template)
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// One container of the pod template that the webhook manages.
pub struct ContainerRef<'p, 'a> {
    /// `containers` or `initContainers`.
    pub field: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container's name.
    pub name: &'p str,
    /// The container.
    pub container: &'p Container<'a>,
}

/// The containers to manage: all of `containers` (and `initContainers` when enabled), minus skipped.
pub fn managed_containers<'p, 'a>(
    pod: &'p PodSpec<'a>,
    include_init: bool,
    skipped: &[&str],
) -> Vec<ContainerRef<'p, 'a>> {
    let fields: &[&'static str] = if include_init {
        &["initContainers", "containers"]
    } else {
        &["containers"]
    };
    let mut out = Vec::new();
    for field in fields {
        for (index, c) in pod.list(field).iter().enumerate() {
            let Some(container) = c.get() else {
                continue;
            };
            let name = container.name.str().unwrap_or("");
            if !skipped.contains(&name) {
                out.push(ContainerRef {
                    field,
                    index,
                    name,
                    container,
                });
            }
        }
    }
    out
}

/// Names in the skip list that match no container (a likely typo worth a warning).
pub fn unknown_skips<'s>(pod: &PodSpec<'_>, skipped: &[&'s str]) -> Vec<&'s str> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod.list(f))
        .filter_map(|c| c.get()?.name.str())
        .collect();
    skipped
        .iter()
        .copied()
        .filter(|s| !names.contains(s))
        .collect()
}
