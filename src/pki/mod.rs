//! Certificates: where the serving certificate comes from, and the resolver they all feed.
//!
//! - [`ca`]: a small CA (rcgen) issuing serving and client certificates.
//! - [`command`]: the `certs` command.
//! - [`files`]: a pair of PEM files, polled for rotation.
//! - [`ephemeral`]: a throw-away CA and certificate for localhost.
//! - [`resolver`]: the rotating [`CertResolver`] every source stores into, and
//!   [`certified_key`], the check that turns PEM text into a servable pair.
//! - [`plan`]: what the self-managed certificates need next (rotate, reissue, trust a new CA),
//!   decided from what the Secret and the webhooks hold; the controller that reads and writes them
//!   is `cluster::certs`.
//! - `der`: the few X.509 fields the planner reads.
//! - [`metrics`]: the `tls` group of metrics.
//!
//! Nothing here talks to the API server.

pub mod ca;
pub mod command;
pub(crate) mod der;
pub mod ephemeral;
pub mod files;
pub mod metrics;
pub mod plan;
pub mod resolver;

pub use ca::{CertError, CertificateAuthority, Pair, localhost_names, service_names};
pub use command::CertsArgs;
pub use ephemeral::{EphemeralError, ephemeral};
pub use files::FilePair;
pub use metrics::{HandshakeFailure, TlsMetrics};
pub use resolver::{CertResolver, PairSource, TlsError, certified_key, provider};
