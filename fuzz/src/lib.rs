//! The checks behind the fuzz targets (fuzz_targets/): each takes raw bytes, drives a real entry
//! point of the webhook and asserts what must hold for any input. A failed assertion or a panic
//! is a crash for libFuzzer.

pub mod admission;
pub mod config;
pub mod review;

use std::sync::{Arc, OnceLock};

use carto_wi_webhook::config::{ConfigEntry, ConfigSnapshot, WorkloadIdentityConfig};
use carto_wi_webhook::settings::Settings;

pub use carto_wi_webhook::admission::limits::MAX_RESPONSE_BYTES;

/// The namespace of every fixture object.
pub const NAMESPACE: &str = "carto";

/// A valid configuration with a pass-through key and the cluster project, so every kind of
/// variable is injected.
pub fn acme() -> Arc<WorkloadIdentityConfig> {
    static ACME: OnceLock<Arc<WorkloadIdentityConfig>> = OnceLock::new();
    ACME.get_or_init(|| {
        let data = [
            (
                "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP",
                "acme-analytics.carto_workflows_temp",
            ),
            (
                "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT",
                "acme-gke-prod",
            ),
            (
                "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL",
                "carto-wi@acme-analytics.iam.gserviceaccount.com",
            ),
            (
                "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID",
                "auth0|3idsj230990sj4wsddd10",
            ),
            ("WORKSPACE_SYNC_DATA_ENABLED", "true"),
            ("GKE_CLUSTER_PROJECT", "acme-gke-prod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Arc::new(
            WorkloadIdentityConfig::from_data(&data, &allowed_extras())
                .expect("the acme config is valid"),
        )
    })
    .clone()
}

/// A snapshot whose default (every namespace) is `config`.
pub fn snapshot_of(config: Arc<WorkloadIdentityConfig>) -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::Valid(config))
}

/// The extra variables the fuzzed platform allows (names in the dictionaries and corpora).
pub fn allowed_extras() -> carto_wi_webhook::config::ExtraEnvAllowlist {
    carto_wi_webhook::config::ExtraEnvAllowlist::new([
        "WORKSPACE_SYNC_DATA_ENABLED",
        "WORKSPACE_A",
        "WORKSPACE_POSTGRES_SSL_MODE",
    ])
}

/// The settings for an input: init containers are injected, and object opt-outs honoured, for
/// inputs of odd length, so both settings are covered without spending input bytes on them.
pub fn settings_for(data: &[u8]) -> Settings {
    let odd = data.len() % 2 == 1;
    Settings {
        include_init_containers: odd,
        object_opt_out: odd,
        extra_env: allowed_extras(),
        ..Settings::default()
    }
}
