//! Typed reasons to deny (or, under softer enforcement, warn about or audit) a request.

use std::fmt;

use crate::config::{ConfigOrigin, ConfigProblem, Rule};

/// How a managed env var was found when it differs from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A literal value.
    Value(String),
    /// A `valueFrom` reference.
    ValueFrom,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Value(v) => write!(f, "{}", super::warnings::short(v)),
            Found::ValueFrom => f.write_str("set by valueFrom"),
        }
    }
}

/// Where a configuration came from, for messages.
fn origin_text(o: &ConfigOrigin) -> &'static str {
    match o {
        ConfigOrigin::Namespace => "the namespace ConfigMap",
        ConfigOrigin::Default => "the cluster default ConfigMap",
    }
}

/// One policy violation. Every violation of a request is reported at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The configuration ConfigMap breaks a rule.
    #[error("{0}")]
    Config(ConfigProblem),
    /// A container has some but not all of the four Workload Identity variables.
    #[error("container {container:?} sets only some Workload Identity variables; missing {}", .missing.join(", "))]
    IncompleteEnv {
        /// Container name.
        container: String,
        /// The required variables it lacks.
        missing: Vec<&'static str>,
    },
    /// A managed container has none of the variables although a configuration applies.
    #[error(
        "container {container:?} has none of the Workload Identity variables (did the mutating webhook run?)"
    )]
    NotInjected {
        /// Container name.
        container: String,
    },
    /// A container's variable breaks a rule.
    #[error("container {container:?}: {name}={} {rule}", super::warnings::short(.value))]
    InvalidEnv {
        /// Container name.
        container: String,
        /// Variable name.
        name: String,
        /// Value found.
        value: String,
        /// Rule broken.
        rule: Rule,
    },
    /// A container's variable differs from the resolved configuration.
    #[error("container {container:?}: {name} is {found}, but {} says {}", origin_text(.origin), super::warnings::short(.expected))]
    EnvDrift {
        /// Container name.
        container: String,
        /// Variable name.
        name: String,
        /// What was found.
        found: Found,
        /// What the config says.
        expected: String,
        /// Where the config came from.
        origin: ConfigOrigin,
    },
    /// The ServiceAccount lacks the GKE annotation.
    #[error("annotation iam.gke.io/gcp-service-account is missing; expected {expected:?}")]
    AnnotationMissing {
        /// The configured email.
        expected: String,
    },
    /// The ServiceAccount's GKE annotation is not a service account email.
    #[error("annotation iam.gke.io/gcp-service-account={} {}", super::warnings::short(.value), Rule::ServiceAccountEmail)]
    AnnotationInvalid {
        /// The value found.
        value: String,
    },
    /// The ServiceAccount's GKE annotation differs from the configuration.
    #[error("annotation iam.gke.io/gcp-service-account is {}, but {} says {expected:?}", super::warnings::short(.found), origin_text(.origin))]
    AnnotationDrift {
        /// The value found.
        found: String,
        /// The configured email.
        expected: String,
        /// Where the config came from.
        origin: ConfigOrigin,
    },
    /// No configuration resolves and `--require-config` is set.
    #[error(
        "no {config_map} ConfigMap in namespace {namespace:?} and no cluster default (--require-config)"
    )]
    NoConfig {
        /// The ConfigMap name looked for.
        config_map: String,
        /// The namespace.
        namespace: String,
    },
    /// The configuration that resolves is invalid and `--require-config` is set.
    #[error(
        "the {config_map} ConfigMap for namespace {namespace:?} is invalid ({problems} problem{}; see it with `carto-wi-webhook check`)", if *.problems == 1 { "" } else { "s" }
    )]
    BrokenConfig {
        /// The ConfigMap name.
        config_map: String,
        /// The namespace.
        namespace: String,
        /// How many problems it has.
        problems: usize,
    },
}

/// A denial: what was denied and every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `Kind namespace/name`.
    pub subject: String,
    /// Every violation.
    pub violations: Vec<Violation>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.violations.len();
        write!(
            f,
            "{} breaks the Workload Identity policy ({n} problem{}):",
            self.subject,
            if n == 1 { "" } else { "s" }
        )?;
        for v in &self.violations {
            write!(f, "\n- {v}")?;
        }
        Ok(())
    }
}
