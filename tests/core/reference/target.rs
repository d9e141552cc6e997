//! The pre-view `target.rs`: what a request is about, read from a fully parsed `DynamicObject`.

use kube::core::admission::{AdmissionRequest, Operation};
use kube::core::{DynamicObject, ObjectMeta};
use serde_json::{Map, Value};

use carto_wi_webhook::admission::Kind;
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::{INJECT_LABEL, SKIP_CONTAINERS_ANNOTATION, Settings};

/// Classify a request (by the kind it was sent as).
pub fn kind_of_request(req: &AdmissionRequest<DynamicObject>) -> Kind {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return Kind::Other;
    }
    Kind::of(&req.kind.group, &req.kind.kind)
}

/// The object a CREATE or UPDATE is about, with its name and namespace.
pub struct Subject<'a> {
    /// What kind of object.
    pub kind: Kind,
    /// The object.
    pub obj: &'a DynamicObject,
    /// Its name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
}

impl<'a> Subject<'a> {
    /// The subject of `req`, or `Err(kind)` when the webhook never acts on the request: other
    /// operations, no object, or an object being deleted (it only sees finalizer removals, which
    /// must never be blocked or changed).
    pub fn of(req: &'a AdmissionRequest<DynamicObject>) -> Result<Self, Kind> {
        let kind = kind_of_request(req);
        let (Operation::Create | Operation::Update) = req.operation else {
            return Err(kind);
        };
        let Some(obj) = req.object.as_ref() else {
            return Err(kind);
        };
        if obj.metadata.deletion_timestamp.is_some() {
            return Err(kind);
        }
        Ok(Self {
            kind,
            obj,
            name: name_of(req, obj),
            namespace: namespace_of(req, obj),
        })
    }

    /// Is this the target ServiceAccount, or a Deployment running as it, and not opted out
    /// (object label or namespace)?
    pub fn is_managed_target(&self, snapshot: &ConfigSnapshot, settings: &Settings) -> bool {
        let is_target = match self.kind {
            Kind::ServiceAccount => self.name == settings.service_account,
            Kind::Deployment => is_target_deployment(self.name, &self.obj.data, settings),
            Kind::ConfigMap | Kind::Other => false,
        };
        is_target
            && !snapshot.is_opted_out(self.namespace)
            && !(settings.object_opt_out && opted_out(&self.obj.metadata))
    }
}

/// The namespace a request is about: the request's, else the object's, else empty.
pub fn namespace_of<'a>(
    req: &'a AdmissionRequest<DynamicObject>,
    obj: &'a DynamicObject,
) -> &'a str {
    req.namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(obj.metadata.namespace.as_deref())
        .unwrap_or("")
}

/// The name a request is about: the request's, else the object's (`generateName` objects have none).
pub fn name_of<'a>(req: &'a AdmissionRequest<DynamicObject>, obj: &'a DynamicObject) -> &'a str {
    if !req.name.is_empty() {
        return &req.name;
    }
    obj.metadata.name.as_deref().unwrap_or("")
}

/// Does the object carry `workload-identity.carto.com/inject: "false"`?
pub fn opted_out(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The pod template spec of a Deployment, if it has one.
pub fn pod_spec(data: &Value) -> Option<&Map<String, Value>> {
    data.get("spec")?.get("template")?.get("spec")?.as_object()
}

/// The pod template's metadata (absent or null → `None`).
pub fn template_meta(data: &Value) -> Option<&Map<String, Value>> {
    data.get("spec")?
        .get("template")?
        .get("metadata")?
        .as_object()
}

/// The ServiceAccount a pod template runs as (`serviceAccountName`, else the deprecated
/// `serviceAccount`; empty counts as unset).
pub fn pod_service_account(pod: &Map<String, Value>) -> Option<&str> {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .filter_map(|k| pod.get(*k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
}

/// Is this Deployment one we inject: runs as the target ServiceAccount, and is on the allowlist?
pub fn is_target_deployment(name: &str, data: &Value, settings: &Settings) -> bool {
    let runs_as_target = pod_spec(data)
        .and_then(pod_service_account)
        .is_some_and(|sa| sa == settings.service_account);
    runs_as_target
        && (settings.deployments.is_empty() || settings.deployments.iter().any(|d| d == name))
}

/// The object opt-outs `obj` carries that are ignored because `--object-opt-out` is off.
pub fn ignored_opt_outs(obj: &DynamicObject, settings: &Settings) -> Vec<&'static str> {
    if settings.object_opt_out {
        return Vec::new();
    }
    let mut ignored = Vec::new();
    if opted_out(&obj.metadata) {
        ignored.push(INJECT_LABEL);
    }
    let on_object = obj
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(SKIP_CONTAINERS_ANNOTATION));
    let on_template = template_meta(&obj.data)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .is_some();
    if on_object || on_template {
        ignored.push(SKIP_CONTAINERS_ANNOTATION);
    }
    ignored
}

/// Container names listed in `skip-containers` on the Deployment or its pod template.
pub fn skipped_containers<'a>(meta: &'a ObjectMeta, data: &'a Value) -> Vec<&'a str> {
    let from_object = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .map(String::as_str);
    let from_template = template_meta(data)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .and_then(Value::as_str);
    from_object
        .into_iter()
        .chain(from_template)
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// One container of the pod template that the webhook manages.
pub struct ContainerRef<'a> {
    /// `containers` or `initContainers`.
    pub field: &'static str,
    /// Index in that list.
    pub index: usize,
    /// The container's name.
    pub name: &'a str,
    /// The container object.
    pub container: &'a Map<String, Value>,
}

/// The containers to manage: all of `containers` (and `initContainers` when enabled), minus skipped.
pub fn managed_containers<'a>(
    pod: &'a Map<String, Value>,
    include_init: bool,
    skipped: &[&str],
) -> Vec<ContainerRef<'a>> {
    let fields: &[&'static str] = if include_init {
        &["initContainers", "containers"]
    } else {
        &["containers"]
    };
    let mut out = Vec::new();
    for field in fields {
        let Some(list) = pod.get(*field).and_then(Value::as_array) else {
            continue;
        };
        for (index, c) in list.iter().enumerate() {
            let Some(container) = c.as_object() else {
                continue;
            };
            let name = container.get("name").and_then(Value::as_str).unwrap_or("");
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
pub fn unknown_skips<'a>(pod: &Map<String, Value>, skipped: &[&'a str]) -> Vec<&'a str> {
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.get(*f).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    skipped
        .iter()
        .copied()
        .filter(|s| !names.contains(s))
        .collect()
}
