//! The HTTPS admission server and its plain-HTTP admin listener, as parts the process (`app`)
//! starts: nothing here decides where the configuration or the certificate comes from.
//!
//! - [`listener`]: bind, accept TLS connections, drain; the HTTP flags.
//! - [`tls`]: the rustls configuration over a certificate resolver, mutual TLS; the TLS flags.
//! - [`router`]: `POST /mutate` and `POST /validate` over the pure admission core.
//! - [`state`]: what the handlers read (config store, settings, metrics).
//! - [`admin`]: `/livez`, `/readyz`, `/metrics`; the admin flags.
//! - [`metrics`]: the `admission` group of metrics.

pub mod admin;
pub mod listener;
pub mod metrics;
pub mod router;
pub mod state;
pub mod tls;

pub use admin::{AdminArgs, AdminListener, AdminState};
pub use listener::{AdmissionListener, BindError, HttpArgs};
pub use metrics::AdmissionMetrics;
pub use router::router;
pub use state::AppState;
pub use tls::TlsArgs;

/// Largest AdmissionReview body accepted (8 MiB); larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
