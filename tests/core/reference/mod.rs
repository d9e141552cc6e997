//! The admission core as it was before the typed views: the same rules on kube-core's fully
//! parsed `AdmissionRequest<DynamicObject>` (every member of the object, walked as JSON values).
//! Kept only as the reference the views are checked against (tests/core/pruned.rs).

#![allow(dead_code)]

use carto_wi_webhook::admission::{Decision, Webhook};
use carto_wi_webhook::config::ConfigSnapshot;
use carto_wi_webhook::settings::Settings;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionRequest;

pub mod config;
mod mutate;
mod target;
mod validate;

/// Run the reference core for `webhook`.
pub fn review(
    webhook: Webhook,
    req: &AdmissionRequest<DynamicObject>,
    snapshot: &ConfigSnapshot,
    settings: &Settings,
) -> Decision {
    match webhook {
        Webhook::Mutate => mutate::mutate(req, snapshot, settings),
        Webhook::Validate => validate::validate(req, snapshot, settings),
    }
}
