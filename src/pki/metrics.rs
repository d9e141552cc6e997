//! The tls group of metrics: `tls_reloads` (certificate files), `tls_handshake_failures`, and
//! `tls_cert_not_after_seconds` (self-managed certificates).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{ReloadCounters, ReloadResult};

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not completed within `--tls-handshake-timeout`.
    Timeout,
    /// Refused by either side (bad certificate, no shared protocol, not TLS, ...).
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: &'static str,
}

/// The tls series.
#[derive(Debug, Clone)]
pub struct TlsMetrics {
    reloads: ReloadCounters,
    handshake_failures: [Counter; 2],
    not_after: Family<CertLabels, Gauge>,
}

impl TlsMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        let reloads = ReloadCounters::register(
            registry,
            "tls_reloads",
            "Reloads of the --tls-cert/--tls-key pair after a change, by result",
        );
        let family = Family::<ReasonLabels, Counter>::default();
        // One statement per series: the guard `get_or_create` returns must be gone before the
        // next call takes the family's write lock.
        let timeout = family
            .get_or_create(&ReasonLabels { reason: "timeout" })
            .clone();
        let error = family
            .get_or_create(&ReasonLabels { reason: "error" })
            .clone();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            family,
        );
        let not_after = Family::<CertLabels, Gauge>::default();
        registry.register_with_unit(
            "tls_cert_not_after",
            "End of validity (unix time) of the self-managed serving certificate and of its CA",
            Unit::Seconds,
            not_after.clone(),
        );
        Self {
            reloads,
            handshake_failures: [timeout, error],
            not_after,
        }
    }

    /// The self-managed certificates' end of validity (`cert` is `serving` or `ca`).
    pub fn cert_not_after(&self, cert: &'static str, unix_seconds: i64) {
        self.not_after
            .get_or_create(&CertLabels { cert })
            .set(unix_seconds);
    }

    /// Count a reload of the certificate files.
    pub fn tls_reload(&self, r: ReloadResult) {
        self.reloads.inc(r);
    }

    /// Count a failed TLS handshake.
    pub fn handshake_failure(&self, f: HandshakeFailure) {
        self.handshake_failures[f as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;

    #[test]
    fn encodes_the_group() {
        let mut registry = metrics::registry();
        let m = TlsMetrics::register(&mut registry);
        m.handshake_failure(HandshakeFailure::Error);
        m.tls_reload(ReloadResult::ReadError);
        let text = metrics::encode(&registry);
        for needle in [
            "carto_wi_tls_handshake_failures_total{reason=\"error\"} 1",
            "carto_wi_tls_handshake_failures_total{reason=\"timeout\"} 0",
            "carto_wi_tls_reloads_total{result=\"read_error\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
