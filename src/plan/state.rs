//! The live state `plan` and `status` start from, the change to preview, and the config
//! snapshots before and after it, built as the watches build theirs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::admission::Kind;
use crate::config::{ConfigEntry, ConfigOrigin, ConfigSnapshot, Resolved};

/// One ServiceAccount or Deployment as read from the cluster (with `metadata.namespace`).
#[derive(Debug, Clone)]
pub struct LiveObject {
    /// ServiceAccount or Deployment.
    pub kind: Kind,
    /// The object as the API returned it.
    pub object: Value,
}

impl LiveObject {
    /// The object's namespace.
    pub fn namespace(&self) -> &str {
        text(&self.object, "/metadata/namespace")
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        text(&self.object, "/metadata/name")
    }
}

fn text<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The last Event the reconciler posted in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastEvent {
    /// Its reason, e.g. `WorkloadIdentityInjected`.
    pub reason: String,
    /// `Kind/name` of the object it is about.
    pub object: String,
    /// Its note.
    pub message: String,
    /// When it was last seen (RFC 3339).
    pub time: String,
}

/// What was read from the cluster.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    /// The webhook's namespace: its ConfigMap is the cluster default.
    pub webhook_namespace: String,
    /// Namespaces neither the webhooks nor the reconciler visit.
    pub excluded: BTreeSet<String>,
    /// Every configuration ConfigMap, by namespace, parsed.
    pub config_maps: BTreeMap<String, ConfigEntry>,
    /// Namespaces carrying the opt-out label.
    pub opted_out: BTreeSet<String>,
    /// The ServiceAccounts and Deployments that may be targets.
    pub objects: Vec<LiveObject>,
    /// The reconciler's last Event per namespace (for `status`).
    pub events: BTreeMap<String, LastEvent>,
}

/// The change `plan` previews.
#[derive(Debug, Clone)]
pub enum Change {
    /// This ConfigMap applied in `namespace`.
    Apply {
        /// Where it is applied.
        namespace: String,
        /// Its configuration, or its problems.
        entry: ConfigEntry,
    },
    /// The ConfigMap of `namespace` deleted.
    Delete {
        /// Where it is deleted.
        namespace: String,
    },
    /// The opt-out label of `namespace` set or removed.
    OptOut {
        /// The namespace.
        namespace: String,
        /// Whether it opts out afterwards.
        opted_out: bool,
    },
}

impl Change {
    /// The namespace the change is made in.
    pub fn namespace(&self) -> &str {
        match self {
            Self::Apply { namespace, .. }
            | Self::Delete { namespace }
            | Self::OptOut { namespace, .. } => namespace,
        }
    }
}

/// Which namespaces to show (`-n NS` or `-A`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every namespace.
    All,
    /// Only this one.
    Only(String),
}

impl Scope {
    /// Is `namespace` shown?
    pub fn shows(&self, namespace: &str) -> bool {
        match self {
            Self::All => true,
            Self::Only(ns) => ns == namespace,
        }
    }
}

/// Where a namespace's configuration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// Its own ConfigMap.
    Own,
    /// The cluster default.
    Default,
    /// No configuration.
    None,
    /// The namespace carries the opt-out label.
    OptedOut,
    /// The webhooks and the reconciler leave the namespace out.
    Excluded,
    /// The ConfigMap that applies is invalid.
    Invalid,
}

impl Source {
    /// The word shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Default => "default",
            Self::None => "none",
            Self::OptedOut => "opted-out",
            Self::Excluded => "excluded",
            Self::Invalid => "invalid",
        }
    }
}

impl LiveState {
    /// The snapshot the watches build from this state, with `change` made first (if any).
    pub fn snapshot(&self, change: Option<&Change>) -> ConfigSnapshot {
        let mut config_maps = self.config_maps.clone();
        let mut opted_out = self.opted_out.clone();
        match change {
            Some(Change::Apply { namespace, entry }) => {
                config_maps.insert(namespace.clone(), entry.clone());
            }
            Some(Change::Delete { namespace }) => {
                config_maps.remove(namespace);
            }
            Some(Change::OptOut {
                namespace,
                opted_out: out,
            }) => {
                if *out {
                    opted_out.insert(namespace.clone());
                } else {
                    opted_out.remove(namespace);
                }
            }
            None => {}
        }
        let mut s = ConfigSnapshot::default();
        for (ns, entry) in config_maps {
            if ns == self.webhook_namespace {
                s.set_default(Some(entry));
            } else {
                s.set_namespace(ns, entry);
            }
        }
        for ns in opted_out {
            s.set_opted_out(ns, true);
        }
        s
    }

    /// Is `namespace` left out by the webhooks and the reconciler?
    pub fn is_excluded(&self, namespace: &str) -> bool {
        namespace == self.webhook_namespace || self.excluded.contains(namespace)
    }

    /// Where `namespace`'s configuration comes from under `snapshot`.
    pub fn source(&self, namespace: &str, snapshot: &ConfigSnapshot) -> Source {
        if self.is_excluded(namespace) {
            return Source::Excluded;
        }
        if snapshot.is_opted_out(namespace) {
            return Source::OptedOut;
        }
        match snapshot.resolve(namespace) {
            Resolved::Config(_, ConfigOrigin::Namespace) => Source::Own,
            Resolved::Config(_, ConfigOrigin::Default) => Source::Default,
            Resolved::Broken(..) => Source::Invalid,
            Resolved::None => Source::None,
        }
    }

    /// Namespaces that hold targets, in order.
    pub fn target_namespaces(&self) -> BTreeSet<&str> {
        self.objects.iter().map(LiveObject::namespace).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigProblem;

    fn invalid() -> ConfigEntry {
        ConfigEntry::Invalid(std::sync::Arc::new(Vec::<ConfigProblem>::new()))
    }

    fn live() -> LiveState {
        let mut live = LiveState {
            webhook_namespace: "wi".into(),
            excluded: ["legacy".to_owned()].into(),
            opted_out: ["out".to_owned(), "legacy".to_owned()].into(),
            ..LiveState::default()
        };
        live.config_maps.insert("wi".into(), invalid());
        live.config_maps.insert("own".into(), invalid());
        live
    }

    #[test]
    fn excluded_comes_before_opted_out_which_comes_before_the_config() {
        let live = live();
        let s = live.snapshot(None);
        let source = |ns| live.source(ns, &s);
        assert_eq!(source("legacy"), Source::Excluded);
        assert_eq!(
            source("wi"),
            Source::Excluded,
            "the webhook's own namespace"
        );
        assert_eq!(source("out"), Source::OptedOut);
        assert_eq!(source("own"), Source::Invalid);
        assert_eq!(source("other"), Source::Invalid, "the default, invalid");
    }

    #[test]
    fn each_change_is_made_on_a_copy() {
        let live = live();
        let delete = Change::Delete {
            namespace: "wi".into(),
        };
        assert_eq!(
            live.source("other", &live.snapshot(Some(&delete))),
            Source::None
        );
        let opt_in = Change::OptOut {
            namespace: "out".into(),
            opted_out: false,
        };
        assert_eq!(
            live.source("out", &live.snapshot(Some(&opt_in))),
            Source::Invalid
        );
        assert_eq!(live.source("out", &live.snapshot(None)), Source::OptedOut);
    }

    #[test]
    fn a_scope_shows_one_namespace_or_all() {
        assert!(Scope::All.shows("x"));
        assert!(Scope::Only("x".into()).shows("x"));
        assert!(!Scope::Only("x".into()).shows("y"));
    }
}
