//! Mutation: annotate the target ServiceAccount, inject env vars into target Deployments.

use serde_json::{Map, Value, json};

use super::patch::{Lookup, PatchBuilder, pointer};
use super::target::{self, ContainerRef, Kind, Subject};
use super::view::{Field, Object};
use super::{Decision, warnings};
use crate::config::{ConfigSnapshot, Resolved, WorkloadIdentityConfig};
use crate::settings::{CONFIG_HASH_ANNOTATION, GCP_SA_ANNOTATION, Settings};

/// Decide the patch for the object of a CREATE or UPDATE. Pure: same inputs, same answer.
pub fn mutate(s: &Subject<'_, '_>, snapshot: &ConfigSnapshot, settings: &Settings) -> Decision {
    if !s.is_managed_target(snapshot, settings) {
        return Decision::allow(s.kind);
    }
    let (kind, obj, namespace) = (s.kind, s.obj, s.namespace);
    let mut decision = Decision::allow(kind);
    let config = match snapshot.resolve(namespace) {
        Resolved::Config(c, _) => c,
        Resolved::None => {
            decision.warnings.push(format!(
                "no {} ConfigMap for namespace {namespace:?} nor a cluster default: Workload Identity not injected",
                settings.config_map
            ));
            return decision;
        }
        Resolved::Broken(problems, _) => {
            let n = problems.len();
            decision.warnings.push(format!(
                "the {} ConfigMap for namespace {namespace:?} is invalid ({n} problem{}): Workload Identity not injected",
                settings.config_map,
                if n == 1 { "" } else { "s" }
            ));
            return decision;
        }
    };
    let mut patch = PatchBuilder::default();
    let mut warns = Vec::new();
    match kind {
        Kind::ServiceAccount => mutate_service_account(obj, config, &mut patch, &mut warns),
        _ => mutate_deployment(obj, config, settings, &mut patch, &mut warns),
    }
    decision.patch = patch.build();
    decision.warnings = warnings::finalize(warns);
    decision
}

fn mutate_service_account(
    obj: &Object<'_>,
    config: &WorkloadIdentityConfig,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    if !obj.metadata.present {
        patch.add(
            pointer(["metadata"]),
            json!({ "annotations": {
                GCP_SA_ANNOTATION: config.service_account_email,
                CONFIG_HASH_ANNOTATION: config.hash,
            }}),
        );
        return;
    }
    let annotations = obj.metadata.annotations.as_ref();
    let lookup = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| Some(v.to_owned()))
    };
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
    obj: &Object<'_>,
    config: &WorkloadIdentityConfig,
    settings: &Settings,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    let Some(pod) = obj.pod_spec() else {
        return;
    };
    let skipped = target::skipped_containers(obj);
    for unknown in target::unknown_skips(pod, &skipped) {
        warns.push(format!(
            "skip-containers names {unknown:?}, which is not a container of this pod template"
        ));
    }
    for c in target::managed_containers(pod, settings.include_init_containers, &skipped) {
        inject_env(&c, config, patch, warns);
    }
    stamp_hash(obj, config, patch);
}

/// Stamp the config fingerprint on the pod template, so a config change rolls the pods.
fn stamp_hash(obj: &Object<'_>, config: &WorkloadIdentityConfig, patch: &mut PatchBuilder) {
    let Some(meta) = obj.template_meta() else {
        patch.add(
            pointer(["spec", "template", "metadata"]),
            json!({ "annotations": { CONFIG_HASH_ANNOTATION: config.hash } }),
        );
        return;
    };
    let annotations = meta.annotations.get();
    let lookup = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.str().map(str::to_owned))
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
    c: &ContainerRef<'_, '_>,
    config: &WorkloadIdentityConfig,
    patch: &mut PatchBuilder,
    warns: &mut Vec<String>,
) {
    let index = c.index.to_string();
    let env_path = ["spec", "template", "spec", c.field, index.as_str(), "env"];
    let list = match &c.container.env {
        Field::Absent | Field::Null => {
            let all = config.env().iter().map(|(k, v)| env_var(k, v)).collect();
            patch.add(pointer(env_path), Value::Array(all));
            return;
        }
        Field::Value(list) => list,
        Field::Wrong => {
            warns.push(format!(
                "container {:?}: env is not a list; left untouched",
                c.name
            ));
            return;
        }
    };
    for (name, value) in config.env() {
        let mut found = false;
        for (j, entry) in list.iter().enumerate() {
            let Some(entry) = entry.get().filter(|e| e.name.str() == Some(name)) else {
                continue;
            };
            found = true;
            let literal = entry.value.str();
            let has_value_from = entry.value_from.is_set();
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
                if entry.value.is_present() {
                    patch.replace(path, new);
                } else {
                    patch.add(path, new);
                }
                warnings::short(literal.unwrap_or(""))
            };
            warns.push(format!(
                "container {:?}: {name} was {was}, set to the configured value",
                c.name
            ));
        }
        if !found {
            let append = env_path.iter().copied().chain(["-"]);
            patch.add(pointer(append), env_var(name, value));
        }
    }
}
