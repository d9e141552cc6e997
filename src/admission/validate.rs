//! Validation: the ConfigMap's rules, and target objects that disagree with the resolved config.

use super::Decision;
use super::limits::{MAX_QUOTED_CONTAINER, MAX_QUOTED_NAME, MAX_QUOTED_VALUE, cut, quote};
use super::target::{self, ContainerRef, Kind, Subject, VarIndex};
use super::view::{EnvVar, Field, Object};
use super::violation::{Denial, Found, Violation, ViolationList};
use super::warnings::Warnings;
use crate::config::{ConfigOrigin, ConfigSnapshot, Resolved, WorkloadIdentityConfig, keys, rules};
use crate::settings::{Enforcement, GCP_SA_ANNOTATION, Settings};

/// Decide whether the object of a CREATE or UPDATE may be stored. Pure: same inputs, same answer.
pub fn validate(s: &Subject<'_, '_>, snapshot: &ConfigSnapshot, settings: &Settings) -> Decision {
    let (kind, obj, name, namespace) = (s.kind, s.obj, s.name, s.namespace);
    let mut violations = ViolationList::default();
    let mut warns = Warnings::default();
    match kind {
        Kind::ConfigMap if name == settings.config_map => {
            // The request's kind decides; the object's own `kind` is not checked again.
            match obj.config_map_shape(None).config(&settings.extra_env) {
                Ok(c) => c.warnings.iter().for_each(|w| warns.push(w.to_string())),
                Err(problems) => problems
                    .into_iter()
                    .for_each(|p| violations.push(Violation::Config(p))),
            }
        }
        Kind::ServiceAccount | Kind::Deployment => {
            if !s.is_managed_target(snapshot, settings) {
                return Decision::allow(kind);
            }
            let resolved = snapshot.resolve(namespace);
            let config = match resolved {
                Resolved::Config(c, origin) => Some((c, origin)),
                Resolved::None | Resolved::Broken(..) => {
                    no_config(resolved, namespace, settings, &mut violations, &mut warns);
                    None
                }
            };
            if kind == Kind::ServiceAccount {
                check_service_account(obj, config, &mut violations);
            } else {
                check_deployment(obj, config, settings, &mut violations);
            }
        }
        _ => return Decision::allow(kind),
    }
    let violations = violations.into_vec();
    let mut decision = Decision::allow(kind);
    if !violations.is_empty() {
        match settings.enforcement {
            Enforcement::Deny => {
                decision.denial = Some(Denial {
                    subject: subject(kind, namespace, name),
                    violations: violations.clone(),
                });
            }
            Enforcement::Warn => violations.iter().for_each(|v| warns.push(v.to_string())),
            Enforcement::Audit => {
                let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
                decision
                    .audit_annotations
                    .insert("violations".into(), text.join("; "));
            }
        }
    }
    decision.violations = violations;
    decision.warnings = warns.finish();
    decision
}

/// `Kind namespace/name`, each part cut.
fn subject(kind: Kind, namespace: &str, name: &str) -> String {
    let name = cut(name, MAX_QUOTED_NAME);
    if namespace.is_empty() {
        format!("{} {name}", kind.as_str())
    } else {
        let namespace = cut(namespace, MAX_QUOTED_NAME);
        format!("{} {namespace}/{name}", kind.as_str())
    }
}

fn no_config(
    resolved: Resolved<'_>,
    namespace: &str,
    settings: &Settings,
    violations: &mut ViolationList,
    warns: &mut Warnings,
) {
    let cm = settings.config_map.clone();
    let ns = cut(namespace, MAX_QUOTED_NAME).into_owned();
    let v = match resolved {
        Resolved::Broken(p, _) => Violation::BrokenConfig {
            config_map: cm,
            namespace: ns,
            problems: p.len(),
        },
        _ => Violation::NoConfig {
            config_map: cm,
            namespace: ns,
        },
    };
    if settings.require_config {
        violations.push(v);
    } else {
        warns.push(match v {
            Violation::NoConfig { .. } => format!(
                "no {} ConfigMap for namespace {} nor a cluster default: Workload Identity is not configured",
                settings.config_map,
                quote(namespace, MAX_QUOTED_NAME)
            ),
            other => other.to_string(),
        });
    }
}

fn check_service_account(
    obj: &Object<'_>,
    config: Option<(&WorkloadIdentityConfig, ConfigOrigin)>,
    violations: &mut ViolationList,
) {
    let found = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GCP_SA_ANNOTATION));
    match (found, config) {
        (Some(v), _) if !rules::is_service_account_email(v) => {
            violations.push(Violation::AnnotationInvalid {
                value: value_text(v),
            });
        }
        (None, Some((c, _))) => violations.push(Violation::AnnotationMissing {
            expected: c.service_account_email.clone(),
        }),
        (Some(v), Some((c, origin))) if v != c.service_account_email => {
            violations.push(Violation::AnnotationDrift {
                found: value_text(v),
                expected: c.service_account_email.clone(),
                origin,
            });
        }
        _ => {}
    }
}

fn check_deployment(
    obj: &Object<'_>,
    config: Option<(&WorkloadIdentityConfig, ConfigOrigin)>,
    settings: &Settings,
    violations: &mut ViolationList,
) {
    let Some(pod) = obj.pod_spec() else {
        return;
    };
    if let Some(too_large) = target::oversize(pod) {
        // Beyond any real pod: refused rather than checked entry by entry.
        violations.push(too_large);
        return;
    }
    // The variables checked, in order: the config's env (the four required first), else the
    // four alone, with no expected value.
    let managed: Vec<(&str, Option<&str>)> = match config {
        Some((cfg, _)) => cfg
            .env()
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect(),
        None => keys::REQUIRED.iter().map(|k| (*k, None)).collect(),
    };
    let index = VarIndex::new(managed.iter().map(|(k, _)| *k));
    let skips = target::Skips::honoured(obj, pod, settings);
    for c in target::managed_containers(pod, settings.include_init_containers, &skips) {
        if config.is_some() && matches!(c.container.env, Field::Wrong) {
            violations.push(Violation::EnvNotAList {
                container: container_name(c.name),
            });
            continue;
        }
        let env: &[Field<EnvVar<'_>>] = c.container.env.get().map_or(&[], Vec::as_slice);
        let hits = index.hits(env);
        if !check_required(&c, &hits, config.is_some(), violations) {
            continue;
        }
        for &(i, j) in &hits {
            let Some(e) = env[j].get() else { continue };
            let (name, expected) = managed[i];
            if i >= keys::REQUIRED.len() && e.value_from.is_set() {
                violations.push(Violation::ExtraOverReference {
                    container: container_name(c.name),
                    name: cut(name, MAX_QUOTED_NAME).into_owned(),
                });
                continue;
            }
            check_entry(&c, name, e, expected.zip(config.map(|c| c.1)), violations);
        }
    }
}

/// The required variables a container lacks (the first four of the index): a violation when
/// some are missing, or all with a config in force. False when the container has none of them
/// (nothing more to check).
fn check_required(
    c: &ContainerRef<'_, '_>,
    hits: &[(usize, usize)],
    has_config: bool,
    violations: &mut ViolationList,
) -> bool {
    let missing: Vec<&'static str> = keys::REQUIRED
        .iter()
        .enumerate()
        .filter(|(i, _)| !hits.iter().any(|(h, _)| h == i))
        .map(|(_, k)| *k)
        .collect();
    if missing.len() == keys::REQUIRED.len() {
        // With a config in force, a managed container must carry the variables: their
        // absence means mutation failed open (or was bypassed).
        if has_config {
            violations.push(Violation::NotInjected {
                container: container_name(c.name),
            });
        }
        return false;
    }
    if !missing.is_empty() {
        violations.push(Violation::IncompleteEnv {
            container: container_name(c.name),
            missing,
        });
    }
    true
}

/// One env entry of a managed variable: a value that breaks its rule, or differs from the
/// config (`expected`, with where it came from).
fn check_entry(
    c: &ContainerRef<'_, '_>,
    name: &str,
    e: &EnvVar<'_>,
    expected: Option<(&str, ConfigOrigin)>,
    violations: &mut ViolationList,
) {
    let literal = e.value.str().unwrap_or("");
    let from_ref = e.value_from.is_set();
    if !from_ref && let Some(rule) = rules::check(name, literal) {
        violations.push(Violation::InvalidEnv {
            container: container_name(c.name),
            name: cut(name, MAX_QUOTED_NAME).into_owned(),
            value: value_text(literal),
            rule,
        });
        return;
    }
    if let Some((expected, origin)) = expected
        && (from_ref || literal != expected)
    {
        violations.push(Violation::EnvDrift {
            container: container_name(c.name),
            name: cut(name, MAX_QUOTED_NAME).into_owned(),
            found: if from_ref {
                Found::ValueFrom
            } else {
                Found::Value(value_text(literal))
            },
            expected: value_text(expected),
            origin,
        });
    }
}

/// A container name as a violation keeps it (cut: it is repeated in every message).
fn container_name(name: &str) -> String {
    cut(name, MAX_QUOTED_CONTAINER).into_owned()
}

/// A value as a violation keeps it (cut: only its start is quoted).
fn value_text(value: &str) -> String {
    cut(value, MAX_QUOTED_VALUE).into_owned()
}
