//! Flags shared by every command that makes admission decisions.

use clap::Args;

use super::{DEFAULT_CONFIG_MAP, DEFAULT_SERVICE_ACCOUNT, Enforcement, Settings};
use crate::config::rules::dns_name;

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
        }
    }
}
