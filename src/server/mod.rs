//! The HTTPS admission server and its plain-HTTP admin listener, as parts the process (`app`)
//! starts: nothing here decides where the configuration or the certificate comes from.
//!
//! - [`listener`]: bind, accept TLS connections, drain; the HTTP flags.
//! - `conn`: what both listeners share: connection cap, accept errors, idle timeout, drain.
//! - [`tls`]: the rustls configuration over a certificate resolver, mutual TLS; the TLS flags.
//! - [`budget`]: the memory all request bodies may hold together, and their cut.
//! - `decode`: an AdmissionReview body → the core's view of its request, or why not.
//! - [`router`]: `POST /mutate` and `POST /validate` over the pure admission core.
//! - [`state`]: what the handlers read (config store, settings, metrics).
//! - [`admin`]: `/livez`, `/readyz`, `/metrics`; the admin flags.
//! - [`metrics`]: the `admission` group of metrics, and the connections of both listeners.

pub mod admin;
pub mod budget;
mod conn;
mod decode;
pub mod listener;
pub mod metrics;
pub mod router;
pub mod state;
pub mod tls;

pub use admin::{AdminArgs, AdminListener, AdminState};
pub use budget::{BodyBudget, BudgetMetrics};
pub use conn::open_file_limit;
pub use listener::{AdmissionListener, BindError, HttpArgs};
pub use metrics::{AdmissionMetrics, ConnectionMetrics, ListenerMetrics};
pub use router::router;
pub use state::AppState;
pub use tls::TlsArgs;

/// Largest AdmissionReview body accepted: 3 MiB, the API server's own request limit (the same
/// bound as the admission core's `MAX_REQUEST_BYTES`); larger bodies get `413`.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
