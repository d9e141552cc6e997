//! carto-wi-webhook: a Kubernetes admission webhook that wires CARTO self-hosted to BigQuery
//! through GKE Workload Identity.
//!
//! - [`config`]: the ConfigMap keys, their rules, the typed config, the snapshot of all configs,
//!   the store it is published into and the `--config` file source.
//! - [`admission`]: the pure core — `(request, snapshot, settings) -> Decision`; [`limits`]: the
//!   cost bounds of one request.
//! - [`offline`]: the `check` and `review` commands over files, built on the core.
//! - [`server`]: the HTTPS admission listener, its routes and the admin listener.
//! - [`pki`]: certificates: a small CA, the `certs` command, file and ephemeral sources, the
//!   rotating resolver they feed, and the pure planner of self-managed certificates.
//! - [`app`]: the `serve` process: startup order, shutdown, standalone and cluster mode.
//! - [`cluster`]: everything that talks to the API server: the config watches, the elected
//!   reconciler, Events, leader election, the self-managed certificates kept in a Secret, and
//!   reading the cluster for `plan` and `status`.
//! - [`plan`]: `plan` and `status` computed without I/O from the live state, by the same core.
//! - [`iam`]: the Google side: is the Workload Identity binding present (IAM API, cached).
//! - [`settings`]: the policy settings and their flags; [`readiness`], [`shutdown`],
//!   [`metrics`], [`logging`]: process-wide plumbing every component shares.
//! - [`cli`]: the command line (only `main` uses it).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod app;
mod backoff;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod duration;
mod file_poll;
pub mod iam;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod pki;
pub mod plan;
pub mod readiness;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod yaml;
