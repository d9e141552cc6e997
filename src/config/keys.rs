//! The ConfigMap data keys the webhook understands.

/// BigQuery dataset for temporary tables, `<project>.<dataset>`.
pub const WORKFLOWS_TEMP: &str = "WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP";
/// GCP project charged for BigQuery.
pub const BILLING_PROJECT: &str = "WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT";
/// Google service account used through Workload Identity.
pub const SERVICE_ACCOUNT_EMAIL: &str = "WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL";
/// CARTO user that owns the connection.
pub const CONNECTION_OWNER_ID: &str = "WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID";
/// Optional: project of the GKE cluster (for the IAM member `<project>.svc.id.goog`).
pub const GKE_CLUSTER_PROJECT: &str = "GKE_CLUSTER_PROJECT";

/// The four required keys, in the order they are injected as env vars.
pub const REQUIRED: [&str; 4] = [
    WORKFLOWS_TEMP,
    BILLING_PROJECT,
    SERVICE_ACCOUNT_EMAIL,
    CONNECTION_OWNER_ID,
];

/// Prefix reserved for the Workload Identity keys: any other key with it is a typo.
pub const RESERVED_PREFIX: &str = "WORKSPACE_WORKLOAD_IDENTITY_";
/// Prefix of extra keys passed through to the workloads as env vars.
pub const PASS_THROUGH_PREFIX: &str = "WORKSPACE_";

/// Every key that has a fixed meaning (used for "did you mean" suggestions).
pub const KNOWN: [&str; 5] = [
    WORKFLOWS_TEMP,
    BILLING_PROJECT,
    SERVICE_ACCOUNT_EMAIL,
    CONNECTION_OWNER_ID,
    GKE_CLUSTER_PROJECT,
];

/// A valid example value for a known key, quoted in error messages.
pub fn example(key: &str) -> &'static str {
    match key {
        WORKFLOWS_TEMP => "my-gcp-project.carto_workflows_temp",
        BILLING_PROJECT => "my-billing-project",
        SERVICE_ACCOUNT_EMAIL => "carto-wi@my-gcp-project.iam.gserviceaccount.com",
        CONNECTION_OWNER_ID => "auth0|3idsj230990sj4wsddd10",
        GKE_CLUSTER_PROJECT => "my-gke-project",
        _ => "WORKSPACE_SYNC_DATA_ENABLED: \"true\"",
    }
}
