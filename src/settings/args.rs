//! Flags shared by every command that makes admission decisions.

use clap::Args;

use super::{DEFAULT_CONFIG_MAP, DEFAULT_SERVICE_ACCOUNT, Enforcement, Settings};
use crate::config::rules::dns_name;
use crate::config::{ExtraEnvAllowlist, extra_env_name};

/// How decisions are made (shared by `serve` and `review`).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Policy")]
pub struct PolicyArgs {
    /// Name of the ConfigMap holding the Workload Identity configuration.
    #[arg(long, env = "CARTO_WI_CONFIG_MAP", default_value = DEFAULT_CONFIG_MAP, value_name = "NAME", value_parser = dns_name)]
    pub config_map: String,

    /// ServiceAccount to annotate; Deployments running as it get the env vars.
    #[arg(long, env = "CARTO_WI_SERVICE_ACCOUNT", default_value = DEFAULT_SERVICE_ACCOUNT, value_name = "NAME", value_parser = dns_name)]
    pub service_account: String,

    /// Only inject these Deployments (comma-separated names); default: every Deployment running as
    /// the ServiceAccount.
    #[arg(long, env = "CARTO_WI_DEPLOYMENTS", value_delimiter = ',', value_name = "A,B", value_parser = dns_name)]
    pub deployments: Vec<String>,

    /// Inject init containers too.
    #[arg(long, env = "CARTO_WI_INCLUDE_INIT_CONTAINERS")]
    pub include_init_containers: bool,

    /// What validation does with a violation: deny it; allow it with warnings; or allow it, log,
    /// count it and add audit annotations.
    #[arg(
        long,
        env = "CARTO_WI_ENFORCEMENT",
        default_value = "deny",
        value_name = "deny|warn|audit"
    )]
    pub enforcement: Enforcement,

    /// Deny target objects when no configuration resolves for their namespace (default: allow
    /// with a warning).
    #[arg(long, env = "CARTO_WI_REQUIRE_CONFIG")]
    pub require_config: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub extra_env: ExtraEnvArgs,

    /// Let an object opt itself out: honour the label workload-identity.carto.com/inject: "false"
    /// on a Deployment or ServiceAccount and the skip-containers annotation. Off: only a
    /// namespace label opts out, so whoever may edit a Deployment cannot escape enforcement.
    #[arg(long, env = "CARTO_WI_OBJECT_OPT_OUT")]
    pub object_opt_out: bool,
}

/// Which pass-through variables a ConfigMap may set (shared by `serve`, `review` and `check`).
#[derive(Args, Debug, Clone, Default)]
pub struct ExtraEnvArgs {
    /// Pass-through WORKSPACE_* variables a ConfigMap may set besides the four Workload Identity
    /// ones (comma-separated names); any other is an error [default: none].
    #[arg(long = "extra-env", env = "CARTO_WI_EXTRA_ENV", value_delimiter = ',', value_name = "NAME,...", value_parser = extra_env_name)]
    pub names: Vec<String>,
}

impl ExtraEnvArgs {
    /// The allowlist these flags describe.
    pub fn allowlist(&self) -> ExtraEnvAllowlist {
        ExtraEnvAllowlist::new(self.names.iter().cloned())
    }
}

impl PolicyArgs {
    /// The settings these flags describe.
    pub fn settings(&self) -> Settings {
        Settings {
            config_map: self.config_map.clone(),
            service_account: self.service_account.clone(),
            deployments: self.deployments.clone(),
            include_init_containers: self.include_init_containers,
            enforcement: self.enforcement,
            require_config: self.require_config,
            extra_env: self.extra_env.allowlist(),
            object_opt_out: self.object_opt_out,
        }
    }
}
