//! Certificates: where the serving certificate comes from, and the resolver they all feed.
//!
//! - [`ca`]: a small CA (rcgen) issuing serving and client certificates.
//! - [`command`]: the `certs` command.
//! - [`files`]: a pair of PEM files, polled for rotation.
//! - [`ephemeral`]: a throw-away CA and certificate for localhost.
//! - [`resolver`]: the rotating [`CertResolver`] every source stores into, and
//!   [`certified_key`], the check that turns PEM text into a servable pair.
//! - [`self_managed`]: a CA and a serving certificate kept in a Secret, the CA written into the
//!   webhook configurations' `caBundle`, rotated before expiry.
//! - [`metrics`]: the `tls` group of metrics.

pub mod ca;
pub mod command;
pub mod ephemeral;
pub mod files;
pub mod metrics;
pub mod resolver;
pub mod self_managed;

pub use ca::{CertError, CertificateAuthority, Pair, localhost_names, service_names};
pub use command::CertsArgs;
pub use ephemeral::{EphemeralError, ephemeral};
pub use files::FilePair;
pub use metrics::{HandshakeFailure, TlsMetrics};
pub use resolver::{CertResolver, PairSource, TlsError, certified_key, provider};
