//! The admission core: a pure, synchronous function from (request, config snapshot, settings) to a
//! [`Decision`]. No I/O happens here; the HTTP server, the `review` CLI and any reconciler are thin
//! adapters over [`mutate`] and [`validate`], so their behaviour cannot drift apart.

use std::collections::BTreeMap;

use json_patch::Patch;

pub mod decode;
mod mutate;
pub mod patch;
pub mod request;
pub mod target;
mod validate;
mod violation;
pub mod warnings;
pub mod wire;

pub use mutate::mutate;
pub use target::Kind;
pub use validate::validate;
pub use violation::{Denial, Found, Violation};

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

/// Run the core for `webhook`.
pub fn review(
    webhook: Webhook,
    req: &kube::core::admission::AdmissionRequest<kube::core::DynamicObject>,
    snapshot: &crate::config::ConfigSnapshot,
    settings: &crate::settings::Settings,
) -> Decision {
    match webhook {
        Webhook::Mutate => mutate(req, snapshot, settings),
        Webhook::Validate => validate(req, snapshot, settings),
    }
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
    /// Every violation found, whatever the enforcement mode did with it.
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
