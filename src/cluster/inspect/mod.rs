//! `plan` and `status` against a live cluster: read it ([`read`]), then compute and render with
//! the pure [`crate::plan`]. Read-only: nothing here writes to the API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::ConfigEntry;
use crate::plan::{Change, LiveState, Scope, render};
use crate::settings::PolicyArgs;

pub mod read;

pub use read::{FALLBACK_NAMESPACE, Reader};

/// What can fail while reading the cluster; one variant per failing API call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable client configuration.
    #[error(transparent)]
    Client(#[from] super::Error),
    /// Listing the webhook configurations (to find the webhook's namespace).
    #[error("cannot list MutatingWebhookConfigurations (pass --webhook-namespace NS): {source}")]
    ListWebhookConfigurations {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing the configuration ConfigMaps cluster-wide.
    #[error("cannot list the configuration ConfigMaps: {source}")]
    ListConfigMaps {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing Namespaces cluster-wide.
    #[error("cannot list Namespaces: {source}")]
    ListNamespaces {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing the target ServiceAccounts cluster-wide.
    #[error("cannot list the target ServiceAccounts: {source}")]
    ListServiceAccounts {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing Deployments cluster-wide.
    #[error("cannot list Deployments: {source}")]
    ListDeployments {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// Listing the reconciler's Events cluster-wide.
    #[error("cannot list the reconciler's Events: {source}")]
    ListEvents {
        /// The API error.
        source: Box<kube::Error>,
    },
    /// The ConfigMap file cannot be used.
    #[error("--filename: {0}")]
    File(String),
    /// No async runtime.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Result of reading the cluster.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How `plan` and `status` print.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A table and a diff-like body.
    Table,
    /// JSON for tools.
    Json,
}

/// Flags shared by `plan` and `status`: which cluster, which namespaces, which policy.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// kubeconfig to use [default: in a pod its service account, else $KUBECONFIG, else
    /// ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The webhook's namespace, whose ConfigMap is the cluster default [default: the namespace
    /// of the Service its webhook configuration calls, else carto-wi-system].
    #[arg(long, value_name = "NS", value_parser = crate::config::rules::dns_name)]
    pub webhook_namespace: Option<String>,

    /// Show only this namespace.
    #[arg(short = 'n', long, value_name = "NS", value_parser = crate::config::rules::dns_name, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Show every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Output format.
    #[arg(short = 'o', long, default_value = "table")]
    pub output: Output,

    /// Namespaces the webhook is told to leave out (its --exclude-namespaces); kube-system and
    /// the webhook's namespace always are.
    #[arg(long, value_delimiter = ',', value_name = "NS,...", value_parser = crate::config::rules::dns_name)]
    pub exclude_namespaces: Vec<String>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,
}

/// `plan`: what applying (or deleting) a ConfigMap would change.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The ConfigMap YAML to preview ('-' for standard input); its namespace says where.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Preview deleting that ConfigMap instead of applying it.
    #[arg(long)]
    pub delete: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub inspect: InspectArgs,
}

/// `status`: where every namespace stands.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub inspect: InspectArgs,
}

/// What a command prints, its exit code, and how many list requests it made.
#[derive(Debug)]
pub struct Report {
    /// Standard output.
    pub stdout: String,
    /// The exit code.
    pub code: u8,
    /// API requests made.
    pub requests: usize,
}

impl InspectArgs {
    fn scope(&self) -> Scope {
        match &self.namespace {
            Some(ns) if !self.all_namespaces => Scope::Only(ns.clone()),
            _ => Scope::All,
        }
    }

    /// Connect, find the webhook's namespace and read the live state.
    async fn read(&self) -> Result<(LiveState, usize)> {
        let client = super::client::connect(self.kubeconfig.as_deref()).await?;
        let mut reader = Reader::new(client);
        let own = reader
            .webhook_namespace(self.webhook_namespace.as_deref())
            .await?;
        let mut excluded: BTreeSet<String> = self.exclude_namespaces.iter().cloned().collect();
        excluded.insert(super::args::ALWAYS_EXCLUDED.to_owned());
        let live = reader
            .live_state(own, excluded, &self.policy.settings())
            .await?;
        Ok((live, reader.requests))
    }
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    Ok(rt.block_on(f))
}

/// Run `plan` on the ConfigMap file's `text`.
pub fn run_plan(args: &PlanArgs, text: &str) -> Result<Report> {
    let settings = args.inspect.policy.settings();
    let loaded = crate::config::load_config_map(text, &settings.config_map, &settings.extra_env)
        .map_err(Error::File)?;
    let name = loaded.name.unwrap_or_default();
    if name != settings.config_map {
        return Err(Error::File(format!(
            "the ConfigMap is named {name:?}; the webhook reads only {:?} (--config-map)",
            settings.config_map
        )));
    }
    let namespace = loaded.namespace.ok_or_else(|| {
        Error::File("the ConfigMap names no namespace: set metadata.namespace".into())
    })?;
    let (live, requests) = block_on(args.inspect.read())??;
    let change = if args.delete {
        Change::Delete { namespace }
    } else {
        Change::Apply {
            namespace,
            entry: ConfigEntry::from_result(loaded.config),
        }
    };
    let plan = crate::plan::plan(&live, &change, &settings, &args.inspect.scope());
    let stdout = match args.inspect.output {
        Output::Json => json(&plan),
        Output::Table => render::plan_text(&plan, &headline(&live, &change, args.delete, &name)),
    };
    Ok(Report {
        stdout,
        code: plan.exit_code(),
        requests,
    })
}

fn headline(live: &LiveState, change: &Change, delete: bool, name: &str) -> String {
    let ns = change.namespace();
    let what = if ns == live.webhook_namespace {
        "the cluster default"
    } else {
        "a namespace override"
    };
    let verb = if delete { "Deleting" } else { "Applying" };
    format!("{verb} ConfigMap {ns}/{name} ({what}):")
}

/// Run `status`.
pub fn run_status(args: &StatusArgs) -> Result<Report> {
    let settings = args.inspect.policy.settings();
    let (live, requests) = block_on(args.inspect.read())??;
    let status = crate::plan::status(&live, &settings, &args.inspect.scope());
    let stdout = match args.inspect.output {
        Output::Json => json(&status),
        Output::Table => render::status_text(&status),
    };
    Ok(Report {
        stdout,
        code: status.exit_code(),
        requests,
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()));
    s.push('\n');
    s
}
