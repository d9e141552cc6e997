//! Policy settings that shape every admission decision (set by flags, shared by every interface).

use std::fmt;
use std::str::FromStr;

use crate::config::ExtraEnvAllowlist;

mod args;

pub use args::{ExtraEnvArgs, PolicyArgs};

/// Default name of the configuration ConfigMap.
pub const DEFAULT_CONFIG_MAP: &str = "carto-workload-identity";
/// Default name of the target ServiceAccount.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "carto-common-backend";
/// Prefix of every label and annotation the webhook reads or writes.
pub const PREFIX: &str = "workload-identity.carto.com/";
/// Opt-out label (object or namespace): `workload-identity.carto.com/inject: "false"`.
pub const INJECT_LABEL: &str = "workload-identity.carto.com/inject";
/// Per-container opt-out annotation (Deployment or pod template): `"a,b"`.
pub const SKIP_CONTAINERS_ANNOTATION: &str = "workload-identity.carto.com/skip-containers";
/// The extra variables the webhook manages in a pod template (annotation on it): `"A,B"`.
pub const MANAGED_ENV_ANNOTATION: &str = "workload-identity.carto.com/managed-env";
/// Config fingerprint annotation (ServiceAccount metadata, Deployment pod template).
pub const CONFIG_HASH_ANNOTATION: &str = "workload-identity.carto.com/config-hash";
/// The GKE Workload Identity annotation written on the ServiceAccount.
pub const GCP_SA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";

/// What the validating webhook does with a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Reject the request.
    #[default]
    Deny,
    /// Allow it, with warnings.
    Warn,
    /// Allow it; log, count and add audit annotations.
    Audit,
}

impl Enforcement {
    /// The lower-case name used by flags and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Warn => "warn",
            Self::Audit => "audit",
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Enforcement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deny" => Ok(Self::Deny),
            "warn" => Ok(Self::Warn),
            "audit" => Ok(Self::Audit),
            other => Err(format!("{other:?} is not one of deny, warn, audit")),
        }
    }
}

/// Everything, besides the request and the configs, that an admission decision depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Name of the ConfigMap holding the configuration.
    pub config_map: String,
    /// Name of the ServiceAccount to annotate and whose Deployments to inject.
    pub service_account: String,
    /// When non-empty, only Deployments with these names are injected.
    pub deployments: Vec<String>,
    /// Inject init containers too.
    pub include_init_containers: bool,
    /// What validation does with violations.
    pub enforcement: Enforcement,
    /// Deny targets when no configuration resolves.
    pub require_config: bool,
    /// The pass-through variables a ConfigMap may set.
    pub extra_env: ExtraEnvAllowlist,
    /// Honour the object opt-out label and `skip-containers` (else only namespaces opt out).
    pub object_opt_out: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            config_map: DEFAULT_CONFIG_MAP.into(),
            service_account: DEFAULT_SERVICE_ACCOUNT.into(),
            deployments: Vec::new(),
            include_init_containers: false,
            enforcement: Enforcement::Deny,
            require_config: false,
            extra_env: ExtraEnvAllowlist::none(),
            object_opt_out: false,
        }
    }
}
