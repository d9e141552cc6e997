//! The admission core: a pure, synchronous function from (object view, config snapshot,
//! settings) to a [`Decision`]. No I/O happens here; the HTTP server and the `review` CLI go
//! through [`review`], a reconciler through [`mutate_object`] and [`validate_object`], so their
//! behaviour cannot drift apart.

use std::collections::BTreeMap;

use json_patch::Patch;
use kube::core::admission::Operation;

pub mod limits;
mod managed_env;
mod mutate;
pub mod patch;
pub mod target;
mod validate;
pub mod view;
mod violation;
pub mod warnings;
pub mod wire;

pub use target::Kind;
use target::Subject;
pub use violation::{Denial, Found, Violation, ViolationList, group as group_violations};

use crate::config::{ConfigSnapshot, Resolved};
use crate::settings::Settings;

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Webhook {
    /// `POST /mutate`.
    Mutate,
    /// `POST /validate`.
    Validate,
}

impl Webhook {
    /// Name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

/// The patch for a CREATE or UPDATE of `object` (of `kind`, in `namespace`).
pub fn mutate_object(
    kind: Kind,
    object: &view::Object<'_>,
    namespace: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    decide_object(Webhook::Mutate, kind, object, namespace, snapshot, settings)
}

/// The patch for a CREATE or UPDATE of `object` under the config already `resolved` for
/// `namespace`, whose opt-out the caller has checked (the reconciler resolves once per namespace).
pub fn mutate_with_config(
    kind: Kind,
    object: &view::Object<'_>,
    namespace: &str,
    resolved: Resolved<'_>,
    settings: &Settings,
) -> Decision {
    match subject(kind, object, object.name(), namespace) {
        Some(s) if target::is_target(kind, s.name, object, settings) => {
            mutate::mutate_target(&s, resolved, settings)
        }
        _ => Decision::allow(kind),
    }
}

/// Whether a CREATE or UPDATE of `object` (of `kind`, in `namespace`) may proceed.
pub fn validate_object(
    kind: Kind,
    object: &view::Object<'_>,
    namespace: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    decide_object(
        Webhook::Validate,
        kind,
        object,
        namespace,
        snapshot,
        settings,
    )
}

fn decide_object(
    webhook: Webhook,
    kind: Kind,
    object: &view::Object<'_>,
    namespace: &str,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    match subject(kind, object, object.name(), namespace) {
        Some(s) => decide(webhook, &s, snapshot, settings),
        None => Decision::allow(kind),
    }
}

fn decide(
    webhook: Webhook,
    s: &Subject<'_, '_>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    match webhook {
        Webhook::Mutate => mutate::mutate(s, snapshot, settings),
        Webhook::Validate => validate::validate(s, snapshot, settings),
    }
}

/// Answer an admission request for `webhook`. The webhook acts only on the object of a CREATE or
/// UPDATE of the resource itself (no subresource); the name and namespace are the request's,
/// else the object's.
pub fn review(
    webhook: Webhook,
    req: &view::ReviewRequest<'_>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    let kind = req.target_kind();
    let (Operation::Create | Operation::Update) = req.operation else {
        return Decision::allow(kind);
    };
    let Some(obj) = req.object.as_ref() else {
        return Decision::allow(kind);
    };
    let name = Some(req.name.as_ref())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| obj.name());
    let namespace = req
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(obj.metadata.namespace.as_deref())
        .unwrap_or("");
    let Some(s) = subject(kind, obj, name, namespace) else {
        return Decision::allow(kind);
    };
    decide(webhook, &s, snapshot, settings)
}

/// The subject of a CREATE or UPDATE, or `None` for an object being deleted: the webhook then
/// only sees finalizer removals, which must never be blocked or changed.
fn subject<'o, 'a>(
    kind: Kind,
    obj: &'o view::Object<'a>,
    name: &'o str,
    namespace: &'o str,
) -> Option<Subject<'o, 'a>> {
    (!obj.is_deleting()).then_some(Subject {
        kind,
        obj,
        name,
        namespace,
    })
}

/// What the webhook answers: allowed or denied, an optional patch, warnings, audit annotations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// What the request was about.
    pub kind: Option<Kind>,
    /// The JSON patch to apply (never empty when present).
    pub patch: Option<Patch>,
    /// Warnings for the client (already capped in length and number).
    pub warnings: Vec<String>,
    /// Set when the request is rejected.
    pub denial: Option<Denial>,
    /// Every violation found, whatever the enforcement mode did with it: as found when there
    /// are at most [`limits::MAX_LISTED_VIOLATIONS`], else grouped and capped
    /// ([`ViolationList`]); [`Decision::violation_count`] counts them all.
    pub violations: Vec<Violation>,
    /// Audit annotations (enforcement `audit`).
    pub audit_annotations: BTreeMap<String, String>,
}

impl Decision {
    /// An allowed, unchanged request.
    pub fn allow(kind: Kind) -> Self {
        Self {
            kind: Some(kind),
            ..Self::default()
        }
    }

    /// How many violations were found, grouped ones included.
    pub fn violation_count(&self) -> usize {
        self.violations.iter().map(Violation::occurrences).sum()
    }

    /// Is the request allowed?
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// One word for logs and metrics: `denied`, `patched`, `violations` (allowed despite some) or
    /// `allowed`.
    pub fn outcome(&self) -> &'static str {
        if self.denial.is_some() {
            "denied"
        } else if self.patch.is_some() {
            "patched"
        } else if !self.violations.is_empty() {
            "violations"
        } else {
            "allowed"
        }
    }
}
