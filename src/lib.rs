//! carto-wi-webhook: a Kubernetes admission webhook that wires CARTO self-hosted to BigQuery
//! through GKE Workload Identity.
//!
//! - [`config`]: the ConfigMap keys, their rules, the typed config and the snapshot of all configs.
//! - [`admission`]: the pure core — `(request, snapshot, settings) -> Decision`.
//! - [`offline`]: the `check` and `review` commands over files, built on the core.
//! - [`pki`]: self-managed certificates (a CA and a serving certificate kept in a Secret).
//! - [`server`]: the HTTPS admission server and its admin listener.
//! - [`cli`]: command-line flags.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admission;
pub mod cli;
pub mod config;
pub mod offline;
pub mod pki;
pub mod server;
pub mod settings;
pub mod yaml;
