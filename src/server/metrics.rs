//! Prometheus metrics (`prometheus-client`), prefix `carto_wi_`.
//!
//! Every label value is known in advance, so every series is created at startup and the hot path
//! only does atomic increments on pre-resolved handles: no lock, no map lookup, no allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use kube::core::admission::Operation;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

use crate::admission::{Decision, Kind, Webhook};
use crate::settings::Enforcement;

/// Upper bounds (seconds) of the latency histogram: 50 µs to 1 s.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

const WEBHOOKS: [Webhook; 2] = [Webhook::Mutate, Webhook::Validate];
const KINDS: [Kind; 4] = [
    Kind::ServiceAccount,
    Kind::Deployment,
    Kind::ConfigMap,
    Kind::Other,
];
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];
const OUTCOMES: [&str; 4] = ["allowed", "patched", "denied", "violations"];
const ENFORCEMENTS: [Enforcement; 3] = [Enforcement::Deny, Enforcement::Warn, Enforcement::Audit];

/// Result of a reload of the config file or of the TLS files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new version is in use.
    Success,
    /// The new version was read but rejected; the last good one keeps serving.
    Invalid,
    /// The files could not be read; the last good version keeps serving.
    ReadError,
}

impl ReloadResult {
    const ALL: [Self; 3] = [Self::Success, Self::Invalid, Self::ReadError];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "invalid",
            Self::ReadError => "read_error",
        }
    }
}

/// Why a request to the admission listener was rejected before reaching the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Content type is not `application/json` (415).
    UnsupportedMediaType,
    /// Body over the cap (413).
    PayloadTooLarge,
    /// The body could not be read (400).
    BodyRead,
    /// The body was not sent within `--request-timeout` (408).
    Timeout,
    /// Not an AdmissionReview in JSON (400).
    InvalidJson,
    /// An AdmissionReview of another version than `admission.k8s.io/v1` (400).
    UnsupportedVersion,
    /// An AdmissionReview without `request` (400).
    MissingRequest,
    /// Method other than POST (405).
    MethodNotAllowed,
    /// Unknown path (404).
    NotFound,
}

impl HttpError {
    const ALL: [Self; 9] = [
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::BodyRead,
        Self::Timeout,
        Self::InvalidJson,
        Self::UnsupportedVersion,
        Self::MissingRequest,
        Self::MethodNotAllowed,
        Self::NotFound,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BodyRead => "body_read_error",
            Self::Timeout => "timeout",
            Self::InvalidJson => "invalid_json",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MissingRequest => "missing_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
        }
    }
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not completed within `--tls-handshake-timeout`.
    Timeout,
    /// Refused by either side (bad certificate, no shared protocol, not TLS, ...).
    Error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    webhook: &'static str,
    kind: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    webhook: &'static str,
    kind: &'static str,
    enforcement: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// A fixed-bucket histogram updated with atomics only (prometheus-client's own takes a mutex on
/// every observation).
#[derive(Debug, Clone)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One per bound, plus `+Inf`.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    /// A histogram with these upper bounds (ascending, seconds).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            inner: Arc::new(HistogramInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.inner.bounds.partition_point(|b| *b < secs);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = self.inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn new_histogram() -> AtomicHistogram {
    AtomicHistogram::new(&DURATION_BUCKETS)
}

/// Every metric of the server, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `[webhook][kind][operation][outcome]`.
    requests: Vec<Counter>,
    requests_family: Family<RequestLabels, Counter>,
    /// `[webhook]`.
    durations: Vec<AtomicHistogram>,
    /// `[webhook][kind][enforcement]`.
    violations: Vec<Counter>,
    config_reloads: Vec<Counter>,
    tls_reloads: Vec<Counter>,
    http_errors: Vec<Counter>,
    handshake_failures: [Counter; 2],
}

fn webhook_index(w: Webhook) -> usize {
    match w {
        Webhook::Mutate => 0,
        Webhook::Validate => 1,
    }
}

fn kind_index(k: Kind) -> usize {
    match k {
        Kind::ServiceAccount => 0,
        Kind::Deployment => 1,
        Kind::ConfigMap => 2,
        Kind::Other => 3,
    }
}

/// Label value of an admission operation.
pub fn operation_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn enforcement_index(e: Enforcement) -> usize {
    match e {
        Enforcement::Deny => 0,
        Enforcement::Warn => 1,
        Enforcement::Audit => 2,
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every series.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("carto_wi");

        let requests_family = Family::<RequestLabels, Counter>::default();
        let mut requests = Vec::with_capacity(128);
        for w in WEBHOOKS {
            for k in KINDS {
                for op in OPERATIONS {
                    for outcome in OUTCOMES {
                        let labels = RequestLabels {
                            webhook: w.as_str(),
                            kind: k.as_str(),
                            operation: op,
                            outcome,
                        };
                        requests.push(requests_family.get_or_create(&labels).clone());
                    }
                }
            }
        }
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by webhook, object kind, operation and outcome",
            requests_family.clone(),
        );

        let durations_family =
            Family::<WebhookLabels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
                new_histogram,
            );
        let durations = WEBHOOKS
            .iter()
            .map(|w| {
                durations_family
                    .get_or_create(&WebhookLabels {
                        webhook: w.as_str(),
                    })
                    .clone()
            })
            .collect();
        registry.register_with_unit(
            "admission_duration",
            "Time to answer an AdmissionReview, from the handler's start to the encoded response",
            Unit::Seconds,
            durations_family,
        );

        let violations_family = Family::<ViolationLabels, Counter>::default();
        let mut violations = Vec::with_capacity(24);
        for w in WEBHOOKS {
            for k in KINDS {
                for e in ENFORCEMENTS {
                    violations.push(
                        violations_family
                            .get_or_create(&ViolationLabels {
                                webhook: w.as_str(),
                                kind: k.as_str(),
                                enforcement: e.as_str(),
                            })
                            .clone(),
                    );
                }
            }
        }
        registry.register(
            "admission_violations",
            "Policy violations found, by webhook, kind and the enforcement mode applied",
            violations_family,
        );

        let results = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<ResultLabels, Counter>::default();
            let handles = ReloadResult::ALL
                .iter()
                .map(|r| {
                    family
                        .get_or_create(&ResultLabels { result: r.as_str() })
                        .clone()
                })
                .collect();
            registry.register(name, help, family);
            handles
        };
        let config_reloads = results(
            &mut registry,
            "config_reloads",
            "Reloads of the --config file after a change, by result",
        );
        let tls_reloads = results(
            &mut registry,
            "tls_reloads",
            "Reloads of the --tls-cert/--tls-key pair after a change, by result",
        );

        let errors_family = Family::<ReasonLabels, Counter>::default();
        let http_errors = HttpError::ALL
            .iter()
            .map(|e| {
                errors_family
                    .get_or_create(&ReasonLabels { reason: e.as_str() })
                    .clone()
            })
            .collect();
        registry.register(
            "http_errors",
            "Requests rejected before admission (bad body, content type, method, path, timeout)",
            errors_family,
        );

        let handshake_family = Family::<ReasonLabels, Counter>::default();
        // One statement per series: the guard `get_or_create` returns must be gone before the
        // next call takes the family's write lock.
        let timeout = handshake_family
            .get_or_create(&ReasonLabels { reason: "timeout" })
            .clone();
        let error = handshake_family
            .get_or_create(&ReasonLabels { reason: "error" })
            .clone();
        let handshake_failures = [timeout, error];
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by reason",
            handshake_family,
        );

        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information (always 1)", build);

        Self {
            registry,
            requests,
            requests_family,
            durations,
            violations,
            config_reloads,
            tls_reloads,
            http_errors,
            handshake_failures,
        }
    }

    /// Count one answered review and its violations, and observe its duration.
    pub fn review(
        &self,
        webhook: Webhook,
        kind: Kind,
        operation: &Operation,
        decision: &Decision,
        enforcement: Enforcement,
        elapsed: Duration,
    ) {
        let (w, k) = (webhook_index(webhook), kind_index(kind));
        let op = match operation {
            Operation::Create => 0,
            Operation::Update => 1,
            Operation::Delete => 2,
            Operation::Connect => 3,
        };
        let outcome = decision.outcome();
        match OUTCOMES.iter().position(|o| *o == outcome) {
            Some(o) => {
                self.requests[((w * KINDS.len() + k) * OPERATIONS.len() + op) * OUTCOMES.len() + o]
                    .inc();
            }
            // An outcome the core added later: counted on the slow path.
            None => {
                self.requests_family
                    .get_or_create(&RequestLabels {
                        webhook: webhook.as_str(),
                        kind: kind.as_str(),
                        operation: OPERATIONS[op],
                        outcome,
                    })
                    .inc();
            }
        }
        if !decision.violations.is_empty() {
            let e = enforcement_index(enforcement);
            self.violations[(w * KINDS.len() + k) * ENFORCEMENTS.len() + e]
                .inc_by(decision.violations.len() as u64);
        }
        self.durations[w].observe(elapsed);
    }

    /// Count a reload of the config file.
    pub fn config_reload(&self, r: ReloadResult) {
        self.config_reloads[r as usize].inc();
    }

    /// Count a reload of the TLS files.
    pub fn tls_reload(&self, r: ReloadResult) {
        self.tls_reloads[r as usize].inc();
    }

    /// Count a rejected request.
    pub fn http_error(&self, e: HttpError) {
        self.http_errors[e as usize].inc();
    }

    /// Count a failed TLS handshake.
    pub fn handshake_failure(&self, f: HandshakeFailure) {
        self.handshake_failures[f as usize].inc();
    }

    /// Number of reviews observed by `webhook` so far.
    pub fn reviews(&self, webhook: Webhook) -> u64 {
        self.durations[webhook_index(webhook)].count()
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_order_matches_label_tables() {
        for (i, r) in ReloadResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, e) in HttpError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        assert_eq!(HandshakeFailure::Error as usize, 1);
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let h = AtomicHistogram::new(&DURATION_BUCKETS);
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(60));
        h.observe(Duration::from_secs(5));
        assert_eq!(h.count(), 4);
        let c: Vec<u64> = h
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(c[0], 2, "10µs and 50µs are <= 50µs");
        assert_eq!(c[1], 1);
        assert_eq!(c[DURATION_BUCKETS.len()], 1, "5s goes to +Inf");
    }

    #[test]
    fn encodes_every_family() {
        let m = Metrics::new();
        m.config_reload(ReloadResult::Invalid);
        m.http_error(HttpError::NotFound);
        let text = m.encode();
        for needle in [
            "carto_wi_admission_requests_total{webhook=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"patched\"} 0",
            "carto_wi_admission_duration_seconds_bucket{le=\"0.00005\",webhook=\"mutate\"} 0",
            "carto_wi_config_reloads_total{result=\"invalid\"} 1",
            "carto_wi_http_errors_total{reason=\"not_found\"} 1",
            "carto_wi_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
