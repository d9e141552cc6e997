//! What an object is to the webhook: which of our targets, and the parts of it we read.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Violation;
use super::limits::{MAX_CONTAINERS, MAX_ENV_ENTRIES, MAX_QUOTED_CONTAINER, cut};
use super::view::{Container, EnvVar, Field, Object, PodSpec};
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
    /// (namespace label; object label with `--object-opt-out`)?
    pub fn is_managed_target(&self, snapshot: &ConfigSnapshot, settings: &Settings) -> bool {
        is_target(self.kind, self.name, self.obj, settings)
            && !snapshot.is_opted_out(self.namespace)
    }
}

/// Is `obj` (of `kind`, named `name`) one of the webhook's targets, and not opted out by its own
/// label (honoured only with `--object-opt-out`)? The namespace's opt-out is the caller's.
pub fn is_target(kind: Kind, name: &str, obj: &Object<'_>, settings: &Settings) -> bool {
    let target = match kind {
        Kind::ServiceAccount => name == settings.service_account,
        Kind::Deployment => is_target_deployment(name, obj, settings),
        Kind::ConfigMap | Kind::Other => false,
    };
    target && !(settings.object_opt_out && opted_out(obj))
}

/// The object opt-outs `obj` carries that are ignored because `--object-opt-out` is off.
pub fn ignored_opt_outs(obj: &Object<'_>, settings: &Settings) -> Vec<&'static str> {
    if settings.object_opt_out {
        return Vec::new();
    }
    let mut ignored = Vec::new();
    if opted_out(obj) {
        ignored.push(INJECT_LABEL);
    }
    let skip_listed = obj
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
        .is_some()
        || obj
            .template_meta()
            .and_then(|m| m.annotations.get())
            .and_then(|a| a.get(SKIP_CONTAINERS_ANNOTATION))
            .is_some();
    if skip_listed {
        ignored.push(SKIP_CONTAINERS_ANNOTATION);
    }
    ignored
}

/// Does the object carry `workload-identity.carto.com/inject: "false"`?
pub fn opted_out(obj: &Object<'_>) -> bool {
    obj.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(is_opt_out)
}

/// Do these labels (of a Namespace, read from the API) opt it out, as [`opted_out`] reads an
/// object's?
pub fn labels_opt_out(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|l| l.get(INJECT_LABEL))
        .is_some_and(|v| is_opt_out(v))
}

/// The value of the inject label that opts out.
fn is_opt_out(value: &str) -> bool {
    value.eq_ignore_ascii_case("false")
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

/// The `skip-containers` lists of a Deployment (its own annotation, then its pod template's),
/// and which containers they name. Built in one pass over the lists whatever their length.
#[derive(Default)]
pub struct Skips<'o> {
    lists: [Option<&'o str>; 2],
    /// Every container and init container name (only when something is listed).
    names: HashSet<&'o str>,
    /// The listed names that are containers.
    skipped: HashSet<&'o str>,
}

impl<'o> Skips<'o> {
    /// The skip lists in force: those of `obj` with `--object-opt-out`, else none.
    pub fn honoured(obj: &'o Object<'_>, pod: &'o PodSpec<'_>, settings: &Settings) -> Self {
        if settings.object_opt_out {
            Self::of(obj, pod)
        } else {
            Self::default()
        }
    }

    /// The skip lists of `obj`, whose pod template is `pod`.
    pub fn of(obj: &'o Object<'_>, pod: &'o PodSpec<'_>) -> Self {
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
        let mut skips = Self {
            lists: [from_object, from_template],
            ..Self::default()
        };
        if skips.listed().next().is_some() {
            skips.names = ["containers", "initContainers"]
                .iter()
                .flat_map(|f| pod.list(f))
                .filter_map(|c| c.get()?.name.str())
                .collect();
            let skipped = skips.listed().filter(|s| skips.names.contains(s)).collect();
            skips.skipped = skipped;
        }
        skips
    }

    /// Every name listed, in order (repeats included).
    fn listed(&self) -> impl Iterator<Item = &'o str> + use<'o> {
        self.lists
            .into_iter()
            .flatten()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// Is the container named `name` skipped?
    pub fn contains(&self, name: &str) -> bool {
        self.skipped.contains(name)
    }

    /// Names in the skip lists that match no container (a likely typo worth a warning).
    pub fn unknown(&self) -> impl Iterator<Item = &'o str> + '_ {
        self.listed().filter(|s| !self.names.contains(s))
    }
}

/// Why a pod template is beyond any real pod ([`MAX_CONTAINERS`], [`MAX_ENV_ENTRIES`]), if it is:
/// such a template is neither patched nor checked.
pub fn oversize(pod: &PodSpec<'_>) -> Option<Violation> {
    let lists = [pod.list("containers"), pod.list("initContainers")];
    let count: usize = lists.iter().map(|l| l.len()).sum();
    if count > MAX_CONTAINERS {
        return Some(Violation::TooManyContainers { count });
    }
    lists.iter().flat_map(|l| l.iter()).find_map(|c| {
        let c = c.get()?;
        let count = c.env.get()?.len();
        (count > MAX_ENV_ENTRIES).then(|| Violation::TooManyEnvEntries {
            container: cut(c.name.str().unwrap_or(""), MAX_QUOTED_CONTAINER).into_owned(),
            count,
        })
    })
}

/// The variables a config manages, by name: where each is in the config's env list.
pub struct VarIndex<'c> {
    names: Vec<&'c str>,
    /// Only for long lists (a linear search is faster for the usual five or so).
    by_name: Option<HashMap<&'c str, usize>>,
}

impl<'c> VarIndex<'c> {
    /// Lists longer than this are hashed.
    const LINEAR: usize = 16;

    /// Index `names` (distinct).
    pub fn new(names: impl Iterator<Item = &'c str>) -> Self {
        let names: Vec<&'c str> = names.collect();
        let by_name = (names.len() > Self::LINEAR)
            .then(|| names.iter().enumerate().map(|(i, n)| (*n, i)).collect());
        Self { names, by_name }
    }

    /// Where `name` is in the list.
    pub fn position(&self, name: &str) -> Option<usize> {
        match &self.by_name {
            Some(map) => map.get(name).copied(),
            None => self.names.iter().position(|n| *n == name),
        }
    }

    /// The env entries that set a managed variable, as `(variable, entry)` positions, ordered by
    /// variable then entry: one pass over the list, whatever its length.
    pub fn hits(&self, env: &[Field<EnvVar<'_>>]) -> Vec<(usize, usize)> {
        let mut hits: Vec<(usize, usize)> = env
            .iter()
            .enumerate()
            .filter_map(|(j, e)| Some((self.position(e.get()?.name.str()?)?, j)))
            .collect();
        hits.sort_unstable();
        hits
    }
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
    skips: &Skips<'_>,
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
            if !skips.contains(name) {
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
