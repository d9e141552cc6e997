//! Command-line interface: every flag is also settable through an environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::rules::dns_name;
use crate::settings::{ExtraEnvArgs, PolicyArgs};

/// Kubernetes admission webhook that wires CARTO self-hosted to BigQuery through GKE Workload
/// Identity.
#[derive(Parser, Debug)]
#[command(name = "carto-wi-webhook", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The program name under which kubectl runs the binary as a plugin (`kubectl carto-wi ...`).
pub const KUBECTL_PLUGIN: &str = "kubectl-carto_wi";

impl Cli {
    /// Parse the process's arguments; installed as [`KUBECTL_PLUGIN`], the help names the
    /// command as kubectl users type it.
    pub fn parse_args() -> Self {
        let mut args = std::env::args_os();
        let program = args.next().unwrap_or_default();
        let is_plugin = std::path::Path::new(&program)
            .file_name()
            .is_some_and(|n| n == KUBECTL_PLUGIN);
        if !is_plugin {
            return Self::parse();
        }
        let command = <Self as clap::CommandFactory>::command().bin_name("kubectl carto-wi");
        let matches = command.get_matches_from(std::iter::once(program).chain(args));
        <Self as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTPS admission server (standalone: --config FILE is every namespace's config).
    Serve(Box<crate::app::ServeArgs>),
    /// Check a Workload Identity ConfigMap (or env file) offline and print the IAM binding.
    Check(CheckArgs),
    /// Run every object of a YAML stream through mutation and validation offline.
    Review(ReviewArgs),
    /// Write a CA and a serving certificate for the webhook Service; print the caBundle.
    Certs(crate::pki::CertsArgs),
    /// Preview what applying (or deleting) a ConfigMap would change in the cluster.
    ///
    /// Read-only. Exit 0: nothing would change; 2: changes; 1: the ConfigMap is invalid, or an
    /// error.
    Plan(Box<crate::cluster::inspect::PlanArgs>),
    /// Where every namespace stands: config source, compliant and drifted targets.
    ///
    /// Also the IAM binding each needs and the reconciler's last Event. Read-only. Exit 1 when a
    /// target lacks its values or drifted, or its config is invalid.
    Status(Box<crate::cluster::inspect::StatusArgs>),
    /// Print the version.
    Version,
}

/// `check`: validate a configuration offline.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// ConfigMap YAML to check ('-' for standard input).
    #[arg(
        short = 'f',
        long = "filename",
        env = "CARTO_WI_CHECK_FILE",
        value_name = "FILE",
        required_unless_present = "env_file",
        conflicts_with = "env_file"
    )]
    pub file: Option<PathBuf>,

    /// KEY=VALUE file to check instead of a ConfigMap.
    #[arg(long, env = "CARTO_WI_CHECK_ENV_FILE", value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// Namespace CARTO runs in, for the IAM binding (default: the ConfigMap's namespace).
    #[arg(short = 'n', long, env = "CARTO_WI_NAMESPACE", value_name = "NS", value_parser = dns_name)]
    pub namespace: Option<String>,

    /// ServiceAccount named in the IAM binding.
    #[arg(long, env = "CARTO_WI_SERVICE_ACCOUNT", default_value = crate::settings::DEFAULT_SERVICE_ACCOUNT, value_name = "NAME", value_parser = dns_name)]
    pub service_account: String,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub extra_env: ExtraEnvArgs,
}

/// `review`: run manifests through the webhook offline.
#[derive(Args, Debug)]
pub struct ReviewArgs {
    /// Multi-document YAML to review ('-' for standard input), e.g. `helm template` output.
    #[arg(
        short = 'f',
        long = "filename",
        env = "CARTO_WI_REVIEW_FILE",
        value_name = "FILE"
    )]
    pub file: PathBuf,

    /// Workload Identity ConfigMap YAML: the default for every namespace.
    #[arg(long, env = "CARTO_WI_CONFIG", value_name = "FILE")]
    pub config: PathBuf,

    /// Namespace for objects that name none.
    #[arg(short = 'n', long, env = "CARTO_WI_NAMESPACE", default_value = "default", value_name = "NS", value_parser = dns_name)]
    pub namespace: String,

    /// What to print on standard output.
    #[arg(short = 'o', long, env = "CARTO_WI_OUTPUT", default_value = "yaml")]
    pub output: crate::offline::OutputFormat,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}
