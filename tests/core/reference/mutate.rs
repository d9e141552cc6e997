//! The pre-view `mutate.rs`, on a fully parsed `DynamicObject`.

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde_json::{Map, Value, json};

use super::target::{self, ContainerRef, Subject};
use carto_wi_webhook::admission::Kind;
use carto_wi_webhook::admission::limits::{MAX_QUOTED_CONTAINER, MAX_QUOTED_NAME, cut, quote};
use carto_wi_webhook::admission::patch::{Lookup, PatchBuilder, pointer};
use carto_wi_webhook::admission::{Decision, warnings};
use carto_wi_webhook::config::{ConfigSnapshot, Resolved, WorkloadIdentityConfig};
use carto_wi_webhook::settings::{CONFIG_HASH_ANNOTATION, GCP_SA_ANNOTATION, Settings};

/// Decide the patch for one admission request. Pure: same inputs, same answer.
pub fn mutate(
    req: &AdmissionRequest<DynamicObject>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    let s = match Subject::of(req) {
        Ok(s) if s.is_managed_target(snapshot, settings) => s,
        Ok(s) => return Decision::allow(s.kind),
        Err(kind) => return Decision::allow(kind),
    };
    let (kind, obj, namespace) = (s.kind, s.obj, s.namespace);
    let mut decision = Decision::allow(kind);
    let config = match snapshot.resolve(namespace) {
        Resolved::Config(c, _) => c,
        Resolved::None => {
            decision.warnings.push(format!(
                "no {} ConfigMap for namespace {} nor a cluster default: Workload Identity not injected",
                settings.config_map,
                quote(namespace, MAX_QUOTED_NAME)
            ));
            return decision;
        }
        Resolved::Broken(problems, _) => {
            let n = problems.len();
            decision.warnings.push(format!(
                "the {} ConfigMap for namespace {} is invalid ({n} problem{}): Workload Identity not injected",
                settings.config_map,
                quote(namespace, MAX_QUOTED_NAME),
                if n == 1 { "" } else { "s" }
            ));
            return decision;
        }
    };
    let mut patch = PatchBuilder::default();
    let mut warns = Vec::new();
    for ignored in target::ignored_opt_outs(obj, settings) {
        warns.push(format!(
            "{ignored} is ignored: in this cluster only a namespace opts out (the webhook runs without --object-opt-out)"
        ));
    }
    match kind {
        Kind::ServiceAccount => mutate_service_account(obj, config, &mut patch, &mut warns),
        _ => mutate_deployment(obj, config, settings, &mut patch, &mut warns),
    }
    decision.patch = patch.build();
    decision.warnings = warnings::finalize(warns);
    decision
}

fn mutate_service_account(
    obj: &DynamicObject,
    config: &WorkloadIdentityConfig,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    let annotations = obj.metadata.annotations.as_ref();
    let lookup = |k: &str| annotations.and_then(|a| a.get(k)).map(|v| Some(v.clone()));
    let replaced = patch.set_string_map(
        &["metadata", "annotations"],
        annotations.map(|_| &lookup as Lookup<'_>),
        &[
            (GCP_SA_ANNOTATION, &config.service_account_email),
            (CONFIG_HASH_ANNOTATION, &config.hash),
        ],
    );
    for (key, old) in replaced {
        if key == GCP_SA_ANNOTATION {
            warns.push(format!(
                "replaced {GCP_SA_ANNOTATION}={} with {:?} from the config",
                warnings::short(old.as_deref().unwrap_or("")),
                config.service_account_email
            ));
        }
    }
}

fn mutate_deployment(
    obj: &DynamicObject,
    config: &WorkloadIdentityConfig,
    settings: &Settings,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    let Some(pod) = target::pod_spec(&obj.data) else {
        return;
    };
    let skipped = if settings.object_opt_out {
        target::skipped_containers(&obj.metadata, &obj.data)
    } else {
        Vec::new()
    };
    for unknown in target::unknown_skips(pod, &skipped) {
        warns.push(format!(
            "skip-containers names {}, which is not a container of this pod template",
            quote(unknown, MAX_QUOTED_CONTAINER)
        ));
    }
    for c in target::managed_containers(pod, settings.include_init_containers, &skipped) {
        inject_env(&c, config, patch, warns);
    }
    stamp_hash(&obj.data, config, patch);
}

/// Stamp the config fingerprint on the pod template, so a config change rolls the pods.
fn stamp_hash(data: &Value, config: &WorkloadIdentityConfig, patch: &mut PatchBuilder) {
    let Some(meta) = target::template_meta(data) else {
        patch.add(
            pointer(["spec", "template", "metadata"]),
            json!({ "annotations": { CONFIG_HASH_ANNOTATION: config.hash } }),
        );
        return;
    };
    let annotations = meta.get("annotations").and_then(Value::as_object);
    let lookup = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.as_str().map(str::to_owned))
    };
    patch.set_string_map(
        &["spec", "template", "metadata", "annotations"],
        annotations.map(|_| &lookup as Lookup<'_>),
        &[(CONFIG_HASH_ANNOTATION, &config.hash)],
    );
}

fn env_var(name: &str, value: &str) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("name".into(), Value::String(name.to_owned()));
    m.insert("value".into(), Value::String(value.to_owned()));
    Value::Object(m)
}

/// Make every managed variable of one container equal the config.
fn inject_env(
    c: &ContainerRef<'_>,
    config: &WorkloadIdentityConfig,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    let index = c.index.to_string();
    let env_path = ["spec", "template", "spec", c.field, index.as_str(), "env"];
    let list = match c.container.get("env") {
        None | Some(Value::Null) => {
            let all = config.env().iter().map(|(k, v)| env_var(k, v)).collect();
            patch.add(pointer(env_path), Value::Array(all));
            return;
        }
        Some(Value::Array(list)) => list,
        Some(_) => {
            warns.push(format!(
                "container {}: env is not a list; left untouched",
                quote(c.name, MAX_QUOTED_CONTAINER)
            ));
            return;
        }
    };
    for (name, value) in config.env() {
        let mut found = false;
        for (j, entry) in list.iter().enumerate() {
            if entry.get("name").and_then(Value::as_str) != Some(name) {
                continue;
            }
            found = true;
            let literal = entry.get("value").and_then(Value::as_str);
            let has_value_from = entry.get("valueFrom").is_some_and(|v| !v.is_null());
            if literal == Some(value) && !has_value_from {
                continue;
            }
            let j = j.to_string();
            let entry_path = env_path.iter().copied().chain([j.as_str()]);
            let was = if has_value_from {
                patch.replace(pointer(entry_path), env_var(name, value));
                "valueFrom".to_owned()
            } else {
                let path = pointer(entry_path.chain(["value"]));
                let new = Value::String(value.clone());
                // `replace` needs the member to exist; `{name: X}` alone means an empty value.
                if entry.get("value").is_some() {
                    patch.replace(path, new);
                } else {
                    patch.add(path, new);
                }
                warnings::short(literal.unwrap_or(""))
            };
            warns.push(format!(
                "container {}: {} was {was}, set to the configured value",
                quote(c.name, MAX_QUOTED_CONTAINER),
                cut(name, MAX_QUOTED_NAME)
            ));
        }
        if !found {
            let append = env_path.iter().copied().chain(["-"]);
            patch.add(pointer(append), env_var(name, value));
        }
    }
}
