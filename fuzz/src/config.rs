//! The configuration parsers of `check` and the standalone server: the ConfigMap file
//! (`config::load_config_map`, which splits and parses YAML and reads the object with
//! `config_from_object`) and the env file (`config::parse_env_file`), fed the same text.
//!
//! Asserted for any text: no panic, and every problem renders; a configuration accepted as
//! valid works: mutating the example Deployment and ServiceAccount with it gives patches that
//! apply, pass validation and are not repeated by a second pass (the admission target's checks).

use std::sync::Arc;

use carto_wi_webhook::config::{
    ConfigProblem, WorkloadIdentityConfig, load_config_map, parse_env_file,
};
use carto_wi_webhook::offline::check_env_file;
use carto_wi_webhook::settings::{DEFAULT_CONFIG_MAP, DEFAULT_SERVICE_ACCOUNT};

use crate::{NAMESPACE, allowed_extras, snapshot_of};

const DEPLOYMENT: &[u8] = include_bytes!("../../examples/admission-review-deployment.json");
const SERVICE_ACCOUNT: &[u8] =
    include_bytes!("../../examples/admission-review-serviceaccount.json");

/// The checks of one input.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let allowed = allowed_extras();
    if let Ok(loaded) = load_config_map(text, DEFAULT_CONFIG_MAP, &allowed) {
        check_result(loaded.config);
    }
    check_result(parse_env_file(text).and_then(|d| WorkloadIdentityConfig::from_data(&d, &allowed)));
    let _ = check_env_file(
        text,
        carto_wi_webhook::offline::CheckContext {
            namespace: Some(NAMESPACE),
            service_account: DEFAULT_SERVICE_ACCOUNT,
            allowed: &allowed,
        },
    );
}

fn check_result(r: Result<WorkloadIdentityConfig, Vec<ConfigProblem>>) {
    match r {
        Ok(config) => check_valid(config),
        Err(problems) => {
            assert!(!problems.is_empty(), "an error lists its problems");
            for p in problems {
                let _ = p.to_string();
            }
        }
    }
}

/// A valid configuration must inject cleanly.
fn check_valid(config: WorkloadIdentityConfig) {
    let _ = config.iam_binding(NAMESPACE, DEFAULT_SERVICE_ACCOUNT);
    let snapshot = snapshot_of(Arc::new(config));
    for review in [DEPLOYMENT, SERVICE_ACCOUNT] {
        crate::admission::check_review(review, &snapshot, &Default::default());
    }
}
