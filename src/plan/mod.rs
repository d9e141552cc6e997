//! `plan` and `status` without I/O: from the live state read from the cluster, what applying (or
//! deleting) a ConfigMap would change, and where every namespace stands now. Every object goes
//! through the same core as admission and the reconciler (`admission::mutate_object`), so the
//! preview cannot disagree with what the reconciler then does.
//!
//! - [`state`]: the live state and the change, and the config snapshots before and after.
//! - [`diff`]: an object before and after a patch, as env and annotation changes.
//! - [`compute`]: the plan; [`status`]: where each namespace stands; [`render`]: text and JSON.

pub mod compute;
pub mod diff;
pub mod render;
pub mod state;
pub mod status;

pub use compute::{NamespacePlan, ObjectChange, Plan, plan};
pub use diff::FieldChange;
pub use state::{Change, LiveState, Scope, Source};
pub use status::{NamespaceStatus, Status, status};
