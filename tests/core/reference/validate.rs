//! The pre-view `validate.rs`, on a fully parsed `DynamicObject`.

use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;
use serde_json::Value;

use super::target::{self, Subject};
use carto_wi_webhook::admission::limits::{
    MAX_QUOTED_CONTAINER, MAX_QUOTED_NAME, MAX_QUOTED_VALUE, cut, quote,
};
use carto_wi_webhook::admission::{self, Kind};
use carto_wi_webhook::admission::{Decision, warnings};
use carto_wi_webhook::admission::{Denial, Found, Violation};
use carto_wi_webhook::config::{
    ConfigOrigin, ConfigSnapshot, Resolved, WorkloadIdentityConfig, keys, rules,
};
use carto_wi_webhook::settings::{Enforcement, GCP_SA_ANNOTATION, Settings};

/// Decide whether one admission request may proceed. Pure: same inputs, same answer.
pub fn validate(
    req: &AdmissionRequest<DynamicObject>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    let s = match Subject::of(req) {
        Ok(s) => s,
        Err(kind) => return Decision::allow(kind),
    };
    let (kind, obj, name, namespace) = (s.kind, s.obj, s.name, s.namespace);
    let mut violations = Vec::new();
    let mut warns = Vec::new();
    match kind {
        Kind::ConfigMap if name == settings.config_map => {
            match super::config::config_from_object(&obj.data, &settings.extra_env) {
                Ok(c) => warns.extend(c.warnings.iter().map(ToString::to_string)),
                Err(problems) => violations.extend(problems.into_iter().map(Violation::Config)),
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
    // Today's core groups and caps what it reports (a no-op for 20 violations or fewer).
    let violations = admission::group_violations(violations);
    let mut decision = Decision::allow(kind);
    if !violations.is_empty() {
        match settings.enforcement {
            Enforcement::Deny => {
                decision.denial = Some(Denial {
                    subject: subject(kind, namespace, name),
                    violations: violations.clone(),
                });
            }
            Enforcement::Warn => warns.extend(violations.iter().map(ToString::to_string)),
            Enforcement::Audit => {
                let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
                decision
                    .audit_annotations
                    .insert("violations".into(), text.join("; "));
            }
        }
    }
    decision.violations = violations;
    decision.warnings = warnings::finalize(warns);
    decision
}

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
    violations: &mut Vec<Violation>,
    warns: &mut Vec<String>,
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
    obj: &DynamicObject,
    config: Option<(&WorkloadIdentityConfig, ConfigOrigin)>,
    violations: &mut Vec<Violation>,
) {
    let found = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(GCP_SA_ANNOTATION));
    match (found, config) {
        (Some(v), _) if !rules::is_service_account_email(v) => {
            violations.push(Violation::AnnotationInvalid {
                value: cut(v, MAX_QUOTED_VALUE).into_owned(),
            });
        }
        (None, Some((c, _))) => violations.push(Violation::AnnotationMissing {
            expected: c.service_account_email.clone(),
        }),
        (Some(v), Some((c, origin))) if *v != c.service_account_email => {
            violations.push(Violation::AnnotationDrift {
                found: cut(v, MAX_QUOTED_VALUE).into_owned(),
                expected: c.service_account_email.clone(),
                origin,
            });
        }
        _ => {}
    }
}

fn check_deployment(
    obj: &DynamicObject,
    config: Option<(&WorkloadIdentityConfig, ConfigOrigin)>,
    settings: &Settings,
    violations: &mut Vec<Violation>,
) {
    let Some(pod) = target::pod_spec(&obj.data) else {
        return;
    };
    let skipped = if settings.object_opt_out {
        target::skipped_containers(&obj.metadata, &obj.data)
    } else {
        Vec::new()
    };
    for c in target::managed_containers(pod, settings.include_init_containers, &skipped) {
        let not_a_list = c
            .container
            .get("env")
            .is_some_and(|e| !e.is_array() && !e.is_null());
        if config.is_some() && not_a_list {
            violations.push(Violation::EnvNotAList {
                container: cut(c.name, MAX_QUOTED_CONTAINER).into_owned(),
            });
            continue;
        }
        let env: &[Value] = c
            .container
            .get("env")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let entries = |name: &str| -> Vec<&Value> {
            env.iter()
                .filter(|e| e.get("name").and_then(Value::as_str) == Some(name))
                .collect()
        };
        let missing: Vec<&'static str> = keys::REQUIRED
            .iter()
            .copied()
            .filter(|k| entries(k).is_empty())
            .collect();
        if missing.len() == keys::REQUIRED.len() {
            // With a config in force, a managed container must carry the variables: their
            // absence means mutation failed open (or was bypassed).
            if config.is_some() {
                violations.push(Violation::NotInjected {
                    container: cut(c.name, MAX_QUOTED_CONTAINER).into_owned(),
                });
            }
            continue;
        }
        if !missing.is_empty() {
            violations.push(Violation::IncompleteEnv {
                container: cut(c.name, MAX_QUOTED_CONTAINER).into_owned(),
                missing,
            });
        }
        let managed: Vec<(&str, Option<&str>)> = match config {
            Some((cfg, _)) => cfg
                .env()
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.as_str())))
                .collect(),
            None => keys::REQUIRED.iter().map(|k| (*k, None)).collect(),
        };
        for (name, expected) in managed {
            for e in entries(name) {
                let literal = e.get("value").and_then(Value::as_str).unwrap_or("");
                let from_ref = e.get("valueFrom").is_some_and(|v| !v.is_null());
                if !from_ref && let Some(rule) = rules::check(name, literal) {
                    violations.push(Violation::InvalidEnv {
                        container: cut(c.name, MAX_QUOTED_CONTAINER).into_owned(),
                        name: cut(name, MAX_QUOTED_NAME).into_owned(),
                        value: cut(literal, MAX_QUOTED_VALUE).into_owned(),
                        rule,
                    });
                    continue;
                }
                if let (Some(expected), Some((_, origin))) = (expected, config)
                    && (from_ref || literal != expected)
                {
                    violations.push(Violation::EnvDrift {
                        container: cut(c.name, MAX_QUOTED_CONTAINER).into_owned(),
                        name: cut(name, MAX_QUOTED_NAME).into_owned(),
                        found: if from_ref {
                            Found::ValueFrom
                        } else {
                            Found::Value(cut(literal, MAX_QUOTED_VALUE).into_owned())
                        },
                        expected: cut(expected, MAX_QUOTED_VALUE).into_owned(),
                        origin,
                    });
                }
            }
        }
    }
}
