//! `check`: report every problem of a configuration and the IAM binding it needs.

use std::fmt::Write;

use crate::config::{ConfigProblem, ExtraEnvAllowlist, WorkloadIdentityConfig, parse_env_file};

/// What `check` prints, and whether the configuration is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// True when the configuration is valid (exit 0).
    pub ok: bool,
    /// Text for standard output.
    pub text: String,
}

/// What a check is against: the namespace and ServiceAccount of the IAM binding, and the extra
/// variables the platform allows.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    /// Namespace CARTO runs in (default: the ConfigMap's).
    pub namespace: Option<&'a str>,
    /// The ServiceAccount named in the IAM binding.
    pub service_account: &'a str,
    /// The pass-through variables a ConfigMap may set.
    pub allowed: &'a ExtraEnvAllowlist,
}

/// Check a ConfigMap YAML file's text.
pub fn check_config_map(text: &str, cx: CheckContext<'_>) -> CheckReport {
    let CheckContext {
        namespace,
        service_account,
        allowed,
    } = cx;
    match crate::config::load_config_map(text, crate::settings::DEFAULT_CONFIG_MAP, allowed) {
        Err(e) => CheckReport {
            ok: false,
            text: format!("error: {e}\n"),
        },
        Ok(cm) => {
            let subject = format!("ConfigMap {}", cm.name.as_deref().unwrap_or("(unnamed)"));
            let ns = namespace.or(cm.namespace.as_deref());
            report(&subject, cm.config, ns, service_account)
        }
    }
}

/// Check a `KEY=VALUE` env file's text.
pub fn check_env_file(text: &str, cx: CheckContext<'_>) -> CheckReport {
    let result =
        parse_env_file(text).and_then(|d| WorkloadIdentityConfig::from_data(&d, cx.allowed));
    report("env file", result, cx.namespace, cx.service_account)
}

fn report(
    subject: &str,
    result: Result<WorkloadIdentityConfig, Vec<ConfigProblem>>,
    namespace: Option<&str>,
    service_account: &str,
) -> CheckReport {
    let mut text = String::new();
    match result {
        Err(problems) => {
            let n = problems.len();
            let _ = writeln!(
                text,
                "{subject} is invalid ({n} problem{}):",
                if n == 1 { "" } else { "s" }
            );
            for p in problems {
                let _ = writeln!(text, "- {p}");
            }
            CheckReport { ok: false, text }
        }
        Ok(c) => {
            let _ = writeln!(text, "{subject} is valid (config-hash {}).", c.hash);
            for w in &c.warnings {
                let _ = writeln!(text, "warning: {w}");
            }
            let _ = writeln!(
                text,
                "Env vars injected into every {service_account} workload:"
            );
            for (k, v) in c.env() {
                let _ = writeln!(text, "  {k}={v}");
            }
            let ns = namespace.unwrap_or("NAMESPACE");
            let _ = writeln!(
                text,
                "Grant the Kubernetes ServiceAccount the right to act as {} (once per namespace):",
                c.service_account_email
            );
            let _ = writeln!(text, "  {}", c.iam_binding(ns, service_account));
            if namespace.is_none() {
                let _ = writeln!(
                    text,
                    "  (replace NAMESPACE with CARTO's namespace, or pass --namespace)"
                );
            }
            CheckReport { ok: true, text }
        }
    }
}
