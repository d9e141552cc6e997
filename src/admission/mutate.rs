//! Mutation: annotate the target ServiceAccount, inject env vars into target Deployments.

use serde_json::{Map, Value, json};

use super::Decision;
use super::limits::{MAX_PATCH_BYTES, MAX_QUOTED_CONTAINER, MAX_QUOTED_NAME, cut, quote};
use super::managed_env::ManagedEnv;
use super::patch::{Lookup, PatchBuilder, pointer};
use super::target::{self, ContainerRef, Kind, Skips, Subject, VarIndex};
use super::view::{EnvVar, Field, Object};
use super::warnings::{self, Warnings};
use crate::config::{ConfigSnapshot, Resolved, WorkloadIdentityConfig, keys};
use crate::settings::{
    CONFIG_HASH_ANNOTATION, GCP_SA_ANNOTATION, MANAGED_ENV_ANNOTATION, Settings,
};

/// Decide the patch for the object of a CREATE or UPDATE. Pure: same inputs, same answer.
pub fn mutate(s: &Subject<'_, '_>, snapshot: &ConfigSnapshot, settings: &Settings) -> Decision {
    if !s.is_managed_target(snapshot, settings) {
        return Decision::allow(s.kind);
    }
    mutate_target(s, snapshot.resolve(s.namespace), settings)
}

/// Decide the patch for a target (its namespace not opted out) under the config `resolved` for
/// its namespace.
pub fn mutate_target(s: &Subject<'_, '_>, resolved: Resolved<'_>, settings: &Settings) -> Decision {
    let (kind, obj, namespace) = (s.kind, s.obj, s.namespace);
    let config = match resolved {
        Resolved::Config(c, _) => c,
        Resolved::None => {
            return not_injected(
                kind,
                format!(
                    "no {} ConfigMap for namespace {} nor a cluster default",
                    settings.config_map,
                    quote(namespace, MAX_QUOTED_NAME)
                ),
            );
        }
        Resolved::Broken(problems, _) => {
            let n = problems.len();
            return not_injected(
                kind,
                format!(
                    "the {} ConfigMap for namespace {} is invalid ({n} problem{})",
                    settings.config_map,
                    quote(namespace, MAX_QUOTED_NAME),
                    if n == 1 { "" } else { "s" }
                ),
            );
        }
    };
    let mut patch = PatchBuilder::default();
    let mut warns = Warnings::default();
    for ignored in target::ignored_opt_outs(obj, settings) {
        warns.push(format!(
            "{ignored} is ignored: in this cluster only a namespace opts out (the webhook runs without --object-opt-out)"
        ));
    }
    match kind {
        Kind::ServiceAccount => mutate_service_account(obj, config, &mut patch, &mut warns),
        _ => mutate_deployment(obj, config, settings, &mut patch, &mut warns),
    }
    if patch.is_full() {
        // No partial patch: validation refuses what is left unpatched.
        return not_injected(
            kind,
            format!(
                "the patch would be over {MAX_PATCH_BYTES} bytes (too many containers or env entries)"
            ),
        );
    }
    let mut decision = Decision::allow(kind);
    decision.patch = patch.build();
    decision.warnings = warns.finish();
    decision
}

/// Allowed unpatched, with one warning saying why.
fn not_injected(kind: Kind, why: String) -> Decision {
    let mut warns = Warnings::default();
    warns.push(format!("{why}: Workload Identity not injected"));
    Decision {
        warnings: warns.finish(),
        ..Decision::allow(kind)
    }
}

fn mutate_service_account(
    obj: &Object<'_>,
    config: &WorkloadIdentityConfig,
    patch: &mut PatchBuilder,
    warns: &mut Warnings,
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
    warns: &mut Warnings,
) {
    let Some(pod) = obj.pod_spec() else {
        return;
    };
    if let Some(too_large) = target::oversize(pod) {
        // Beyond any real pod: no patch (validation refuses it).
        warns.push(format!("{too_large}: Workload Identity not injected"));
        return;
    }
    let skips = Skips::honoured(obj, pod, settings);
    for unknown in skips.unknown() {
        warns.push_with(|| {
            format!(
                "skip-containers names {}, which is not a container of this pod template",
                quote(unknown, MAX_QUOTED_CONTAINER)
            )
        });
    }
    let index = VarIndex::new(config.env().iter().map(|(k, _)| k.as_str()));
    let mut managed = ManagedEnv::of(obj, config);
    for c in target::managed_containers(pod, settings.include_init_containers, &skips) {
        let position = c.index.to_string();
        let env_path = ["spec", "template", "spec", c.field, &position, "env"];
        inject_env(&c, &env_path, &index, config, &mut managed, patch, warns);
        managed.remove_stale(&c, &env_path, patch);
        if patch.is_full() {
            return;
        }
    }
    stamp_template(obj, config, &managed, patch);
}

/// Stamp the config fingerprint on the pod template, so a config change rolls the pods, and
/// record the extra variables the webhook manages there.
fn stamp_template(
    obj: &Object<'_>,
    config: &WorkloadIdentityConfig,
    managed: &ManagedEnv<'_>,
    patch: &mut PatchBuilder,
) {
    let record = managed.record(config);
    let mut entries = vec![(CONFIG_HASH_ANNOTATION, config.hash.as_str())];
    if let Some(names) = &record {
        entries.push((MANAGED_ENV_ANNOTATION, names));
    }
    let Some(meta) = obj.template_meta() else {
        let map: Map<String, Value> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        patch.add(
            pointer(["spec", "template", "metadata"]),
            json!({ "annotations": map }),
        );
        return;
    };
    let annotations = meta.annotations.get();
    let lookup = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.str().map(str::to_owned))
    };
    let path = ["spec", "template", "metadata", "annotations"];
    patch.set_string_map(&path, annotations.map(|_| &lookup as Lookup<'_>), &entries);
    if record.is_none() && managed.annotated() {
        patch.remove(pointer(path.into_iter().chain([MANAGED_ENV_ANNOTATION])));
    }
}

fn env_var(name: &str, value: &str) -> Value {
    let mut m = Map::with_capacity(2);
    m.insert("name".into(), Value::String(name.to_owned()));
    m.insert("value".into(), Value::String(value.to_owned()));
    Value::Object(m)
}

/// Make every managed variable of one container equal the config (`index` is its env list by
/// name): one pass over the container's env list, then one over the config's.
fn inject_env(
    c: &ContainerRef<'_, '_>,
    env_path: &[&str],
    index: &VarIndex<'_>,
    config: &WorkloadIdentityConfig,
    managed: &mut ManagedEnv<'_>,
    patch: &mut PatchBuilder,
    warns: &mut Warnings,
) {
    let list = match &c.container.env {
        Field::Absent | Field::Null => {
            let all = config.env().iter().map(|(k, v)| env_var(k, v)).collect();
            patch.add(pointer(env_path.iter().copied()), Value::Array(all));
            config.extra.iter().for_each(|(k, _)| managed.touch(k));
            return;
        }
        Field::Value(list) => list,
        Field::Wrong => {
            warns.push(format!(
                "container {}: env is not a list; left untouched",
                quote(c.name, MAX_QUOTED_CONTAINER)
            ));
            return;
        }
    };
    let hits = index.hits(list);
    let mut hits = hits.iter().peekable();
    for (i, (name, value)) in config.env().iter().enumerate() {
        let extra = i >= keys::REQUIRED.len();
        let mut found = false;
        while let Some(&(_, j)) = hits.next_if(|(v, _)| *v == i) {
            found = true;
            let Some(entry) = list[j].get() else { continue };
            if extra && entry.value_from.is_set() {
                warn_reference_kept(c, name, warns);
            } else if set_entry(c, env_path, j, entry, (name, value), patch, warns) && extra {
                managed.touch(name);
            }
        }
        if !found {
            let append = env_path.iter().copied().chain(["-"]);
            patch.add(pointer(append), env_var(name, value));
            if extra {
                managed.touch(name);
            }
        }
        if patch.is_full() {
            return;
        }
    }
}

/// An extra variable set by a reference is left as it is: a config never replaces a Secret's
/// value with a literal.
fn warn_reference_kept(c: &ContainerRef<'_, '_>, name: &str, warns: &mut Warnings) {
    warns.push_with(|| {
        format!(
            "container {}: {} is set by valueFrom; an extra variable never replaces a reference, left as it is",
            quote(c.name, MAX_QUOTED_CONTAINER),
            cut(name, MAX_QUOTED_NAME)
        )
    });
}

/// Make entry `j` (named `name`) of a container's env list hold `value`, with a warning when it
/// held something else. True when it was changed.
fn set_entry(
    c: &ContainerRef<'_, '_>,
    env_path: &[&str],
    j: usize,
    entry: &EnvVar<'_>,
    (name, value): (&str, &str),
    patch: &mut PatchBuilder,
    warns: &mut Warnings,
) -> bool {
    let literal = entry.value.str();
    let has_value_from = entry.value_from.is_set();
    if literal == Some(value) && !has_value_from {
        return false;
    }
    let j = j.to_string();
    let entry_path = env_path.iter().copied().chain([j.as_str()]);
    if has_value_from {
        patch.replace(pointer(entry_path), env_var(name, value));
    } else {
        let path = pointer(entry_path.chain(["value"]));
        let new = Value::String(value.to_owned());
        // `replace` needs the member to exist; `{name: X}` alone means an empty value.
        if entry.value.is_present() {
            patch.replace(path, new);
        } else {
            patch.add(path, new);
        }
    }
    warns.push_with(|| {
        let was = if has_value_from {
            "valueFrom".to_owned()
        } else {
            warnings::short(literal.unwrap_or(""))
        };
        format!(
            "container {}: {} was {was}, set to the configured value",
            quote(c.name, MAX_QUOTED_CONTAINER),
            cut(name, MAX_QUOTED_NAME)
        )
    });
    true
}
