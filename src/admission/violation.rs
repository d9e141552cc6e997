//! Typed reasons to deny (or, under softer enforcement, warn about or audit) a request.

use std::fmt;

use super::limits::{MAX_CONTAINERS, MAX_ENV_ENTRIES, MAX_LISTED_VIOLATIONS};
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
    /// A managed container's `env` is not a list (a shape the API server's schema refuses), so
    /// it cannot hold the variables although a configuration applies.
    #[error(
        "container {container:?} has an env that is not a list, so none of the Workload Identity variables"
    )]
    EnvNotAList {
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
    /// An extra variable of the config is set from a reference in the container: the webhook
    /// never replaces a `valueFrom` (a Secret's password with a literal, say) with a config value.
    #[error(
        "container {container:?}: {name} is set by valueFrom, and the config passes it through as a value; \
         an extra variable never replaces a reference: remove {name} from the ConfigMap or the valueFrom from the container"
    )]
    ExtraOverReference {
        /// Container name.
        container: String,
        /// Variable name.
        name: String,
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
    /// The pod template has more containers and init containers than any real pod: it is not
    /// checked (nor patched).
    #[error(
        "the pod template has {count} containers and init containers, more than the {MAX_CONTAINERS} the webhook handles"
    )]
    TooManyContainers {
        /// How many it has.
        count: usize,
    },
    /// A container has more env entries than any real pod: the pod template is not checked.
    #[error(
        "container {container:?} has {count} env entries, more than the {MAX_ENV_ENTRIES} the webhook handles"
    )]
    TooManyEnvEntries {
        /// Container name (cut).
        container: String,
        /// How many entries it has.
        count: usize,
    },
    /// The same problem found several times (on duplicated env entries, in many containers):
    /// the first one, shown once, with how many more there are.
    /// The count comes first so that a cut (warnings are at most 256 chars) keeps it.
    #[error("[{} times{}] {first}", .more + 1, in_containers(*.containers))]
    Repeated {
        /// The first occurrence.
        first: Box<Violation>,
        /// How many more occurrences.
        more: usize,
        /// How many containers they are in, in all (0 when not about containers).
        containers: usize,
    },
    /// Violations past the [`MAX_LISTED_VIOLATIONS`] listed, only counted.
    #[error("\u{2026} and {0} more")]
    Unlisted(usize),
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

fn in_containers(n: usize) -> String {
    if n > 1 {
        format!(", in {n} containers")
    } else {
        String::new()
    }
}

impl Violation {
    /// How many problems this entry stands for ([`Violation::Repeated`] and
    /// [`Violation::Unlisted`] stand for several).
    pub fn occurrences(&self) -> usize {
        match self {
            Self::Repeated { more, .. } => more + 1,
            Self::Unlisted(n) => *n,
            _ => 1,
        }
    }

    /// The container a violation is about, if any.
    fn container(&self) -> Option<&str> {
        match self {
            Self::IncompleteEnv { container, .. }
            | Self::NotInjected { container }
            | Self::EnvNotAList { container }
            | Self::InvalidEnv { container, .. }
            | Self::EnvDrift { container, .. }
            | Self::ExtraOverReference { container, .. }
            | Self::TooManyEnvEntries { container, .. } => Some(container),
            _ => None,
        }
    }

    /// The same problem, in whatever container and with whatever value: what grouping merges.
    fn same_problem(&self, other: &Self) -> bool {
        use Violation as V;
        match (self, other) {
            (V::Config(a), V::Config(b)) => same_config_problem(a, b),
            (V::IncompleteEnv { missing: a, .. }, V::IncompleteEnv { missing: b, .. }) => a == b,
            (V::NotInjected { .. }, V::NotInjected { .. }) => true,
            (V::EnvNotAList { .. }, V::EnvNotAList { .. }) => true,
            (V::ExtraOverReference { name, .. }, V::ExtraOverReference { name: n2, .. }) => {
                name == n2
            }
            (
                V::InvalidEnv { name, rule, .. },
                V::InvalidEnv {
                    name: n2, rule: r2, ..
                },
            ) => name == n2 && rule == r2,
            (
                V::EnvDrift {
                    name,
                    found,
                    expected,
                    origin,
                    ..
                },
                V::EnvDrift {
                    name: n2,
                    found: f2,
                    expected: e2,
                    origin: o2,
                    ..
                },
            ) => {
                name == n2
                    && expected == e2
                    && origin == o2
                    && matches!(found, Found::ValueFrom) == matches!(f2, Found::ValueFrom)
            }
            (a, b) => a == b,
        }
    }
}

/// The same config problem, whatever the key or value it quotes.
fn same_config_problem(a: &ConfigProblem, b: &ConfigProblem) -> bool {
    use ConfigProblem as P;
    match (a, b) {
        (P::UnknownKey { suggestion: a, .. }, P::UnknownKey { suggestion: b, .. }) => a == b,
        (
            P::Invalid { key, rule, .. },
            P::Invalid {
                key: k2, rule: r2, ..
            },
        ) => key == k2 && rule == r2,
        (P::BinaryData { .. }, P::BinaryData { .. })
        | (P::NotAString { .. }, P::NotAString { .. }) => true,
        (a, b) => a == b,
    }
}

/// One group of [`ViolationList`]: the first occurrence of a problem and how often it recurs.
#[derive(Debug)]
struct Group {
    first: Violation,
    more: usize,
    containers: usize,
    last_container: Option<String>,
}

/// The violations of one request as they are found, kept bounded: as found while there are at
/// most [`MAX_LISTED_VIOLATIONS`], else grouped ([`Violation::Repeated`]), at most
/// [`MAX_LISTED_VIOLATIONS`] groups, the rest counted ([`Violation::Unlisted`]). Memory stays
/// bounded whatever the number pushed.
#[derive(Debug, Default)]
pub struct ViolationList {
    /// Every violation, while there are few.
    found: Vec<Violation>,
    groups: Vec<Group>,
    unlisted: usize,
    total: usize,
}

impl ViolationList {
    /// Add a violation.
    pub fn push(&mut self, v: Violation) {
        self.total += 1;
        self.group(&v);
        if self.total <= MAX_LISTED_VIOLATIONS {
            self.found.push(v);
        } else {
            self.found = Vec::new();
        }
    }

    /// Is the list empty?
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    fn group(&mut self, v: &Violation) {
        let container = v.container();
        if let Some(g) = self.groups.iter_mut().find(|g| g.first.same_problem(v)) {
            g.more += 1;
            if container.is_some() && g.last_container.as_deref() != container {
                g.containers += 1;
                g.last_container = container.map(str::to_owned);
            }
        } else if self.groups.len() < MAX_LISTED_VIOLATIONS {
            self.groups.push(Group {
                first: v.clone(),
                more: 0,
                containers: usize::from(container.is_some()),
                last_container: container.map(str::to_owned),
            });
        } else {
            self.unlisted += 1;
        }
    }

    /// The violations to report: as found, or grouped and capped.
    pub fn into_vec(self) -> Vec<Violation> {
        if self.total <= MAX_LISTED_VIOLATIONS {
            return self.found;
        }
        let mut out: Vec<Violation> = self
            .groups
            .into_iter()
            .map(|g| match g.more {
                0 => g.first,
                more => Violation::Repeated {
                    first: Box::new(g.first),
                    more,
                    containers: g.containers,
                },
            })
            .collect();
        if self.unlisted > 0 {
            out.push(Violation::Unlisted(self.unlisted));
        }
        out
    }
}

/// Group and cap violations found all at once (see [`ViolationList`]).
pub fn group(violations: impl IntoIterator<Item = Violation>) -> Vec<Violation> {
    let mut list = ViolationList::default();
    for v in violations {
        list.push(v);
    }
    list.into_vec()
}

/// A denial: what was denied and every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// `Kind namespace/name`.
    pub subject: String,
    /// Every violation (grouped and capped, see [`ViolationList`]).
    pub violations: Vec<Violation>,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n: usize = self.violations.iter().map(Violation::occurrences).sum();
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
