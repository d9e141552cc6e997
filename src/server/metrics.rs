//! The admission group of metrics: reviews answered, their durations and violations, and the
//! requests rejected before review; and the connections of both listeners.

use std::time::Duration;

use kube::core::admission::Operation;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::{Decision, Kind, Webhook};
use crate::metrics::{AtomicHistogram, DURATION_BUCKETS};
use crate::settings::Enforcement;

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

/// Why a request to the admission listener was rejected before reaching the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// Content type is not `application/json` (415).
    UnsupportedMediaType,
    /// Body over the cap (413).
    PayloadTooLarge,
    /// The body could not be read (400).
    BodyRead,
    /// The body was not sent within `--request-timeout`, or was cut to make room for others
    /// (408).
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
    /// The request-body budget stayed full (503).
    BodyBudget,
}

impl HttpError {
    const ALL: [Self; 10] = [
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::BodyRead,
        Self::Timeout,
        Self::InvalidJson,
        Self::UnsupportedVersion,
        Self::MissingRequest,
        Self::MethodNotAllowed,
        Self::NotFound,
        Self::BodyBudget,
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
            Self::BodyBudget => "body_budget",
        }
    }
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
struct ReasonLabels {
    reason: &'static str,
}

fn new_histogram() -> AtomicHistogram {
    AtomicHistogram::new(&DURATION_BUCKETS)
}

/// The admission series: `admission_requests`, `admission_duration_seconds`,
/// `admission_violations`, `http_errors`.
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    /// `[webhook][kind][operation][outcome]`.
    requests: Vec<Counter>,
    requests_family: Family<RequestLabels, Counter>,
    /// `[webhook]`.
    durations: Vec<AtomicHistogram>,
    /// `[webhook][kind][enforcement]`.
    violations: Vec<Counter>,
    http_errors: Vec<Counter>,
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

fn operation_index(op: &Operation) -> usize {
    match op {
        Operation::Create => 0,
        Operation::Update => 1,
        Operation::Delete => 2,
        Operation::Connect => 3,
    }
}

/// Label value of an admission operation.
pub fn operation_str(op: &Operation) -> &'static str {
    OPERATIONS[operation_index(op)]
}

fn enforcement_index(e: Enforcement) -> usize {
    match e {
        Enforcement::Deny => 0,
        Enforcement::Warn => 1,
        Enforcement::Audit => 2,
    }
}

impl AdmissionMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        let (requests, requests_family) = register_requests(registry);
        let durations = register_durations(registry);
        let violations = register_violations(registry);
        let http_errors = register_http_errors(registry);
        Self {
            requests,
            requests_family,
            durations,
            violations,
            http_errors,
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
        let (w, k, op) = (
            webhook_index(webhook),
            kind_index(kind),
            operation_index(operation),
        );
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
                .inc_by(decision.violation_count() as u64);
        }
        self.durations[w].observe(elapsed);
    }

    /// Count a rejected request.
    pub fn http_error(&self, e: HttpError) {
        self.http_errors[e as usize].inc();
    }

    /// Number of reviews observed by `webhook` so far.
    pub fn reviews(&self, webhook: Webhook) -> u64 {
        self.durations[webhook_index(webhook)].count()
    }
}

fn register_requests(registry: &mut Registry) -> (Vec<Counter>, Family<RequestLabels, Counter>) {
    let family = Family::<RequestLabels, Counter>::default();
    let mut handles = Vec::with_capacity(128);
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
                    handles.push(family.get_or_create(&labels).clone());
                }
            }
        }
    }
    registry.register(
        "admission_requests",
        "AdmissionReviews answered, by webhook, object kind, operation and outcome",
        family.clone(),
    );
    (handles, family)
}

fn register_durations(registry: &mut Registry) -> Vec<AtomicHistogram> {
    let family =
        Family::<WebhookLabels, AtomicHistogram, fn() -> AtomicHistogram>::new_with_constructor(
            new_histogram,
        );
    let handles = WEBHOOKS
        .iter()
        .map(|w| {
            family
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
        family,
    );
    handles
}

fn register_violations(registry: &mut Registry) -> Vec<Counter> {
    let family = Family::<ViolationLabels, Counter>::default();
    let mut handles = Vec::with_capacity(24);
    for w in WEBHOOKS {
        for k in KINDS {
            for e in ENFORCEMENTS {
                handles.push(
                    family
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
        family,
    );
    handles
}

fn register_http_errors(registry: &mut Registry) -> Vec<Counter> {
    let family = Family::<ReasonLabels, Counter>::default();
    let handles = HttpError::ALL
        .iter()
        .map(|e| {
            family
                .get_or_create(&ReasonLabels { reason: e.as_str() })
                .clone()
        })
        .collect();
    registry.register(
        "http_errors",
        "Requests rejected before admission (bad body, content type, method, path, timeout)",
        family,
    );
    handles
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// The connection series of one listener (`admission` or `admin`).
#[derive(Debug, Clone)]
pub struct ListenerMetrics {
    listener: &'static str,
    open: Gauge,
    accept_errors: Counter,
    connection_errors: Counter,
    idle_closed: Counter,
}

impl ListenerMetrics {
    /// The listener's label value.
    pub fn listener(&self) -> &'static str {
        self.listener
    }

    pub(crate) fn opened(&self) {
        self.open.inc();
    }

    pub(crate) fn closed(&self) {
        self.open.dec();
    }

    pub(crate) fn accept_error(&self) {
        self.accept_errors.inc();
    }

    pub(crate) fn connection_error(&self) {
        self.connection_errors.inc();
    }

    pub(crate) fn idle_closed(&self) {
        self.idle_closed.inc();
    }
}

/// The connection series of both listeners: `connections`, `accept_errors`,
/// `connection_errors`, `idle_connections_closed`, each by `listener`.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// The HTTPS admission listener.
    pub admission: ListenerMetrics,
    /// The plain-HTTP admin listener.
    pub admin: ListenerMetrics,
}

impl ConnectionMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        let open = Family::<ListenerLabels, Gauge>::default();
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        let connection_errors = Family::<ListenerLabels, Counter>::default();
        let idle_closed = Family::<ListenerLabels, Counter>::default();
        let listener = |name: &'static str| {
            let labels = ListenerLabels { listener: name };
            ListenerMetrics {
                listener: name,
                open: open.get_or_create(&labels).clone(),
                accept_errors: accept_errors.get_or_create(&labels).clone(),
                connection_errors: connection_errors.get_or_create(&labels).clone(),
                idle_closed: idle_closed.get_or_create(&labels).clone(),
            }
        };
        let (admission, admin) = (listener("admission"), listener("admin"));
        registry.register("connections", "Open connections, by listener", open);
        registry.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors), by listener",
            accept_errors,
        );
        registry.register(
            "connection_errors",
            "Connections ended by an error after the TLS handshake (malformed HTTP, header \
             timeout, HTTP/2 protocol errors such as rapid resets, client resets), by listener",
            connection_errors,
        );
        registry.register(
            "idle_connections_closed",
            "Connections closed after --idle-timeout (admin: --admin-idle-timeout) without a \
             request, by listener",
            idle_closed,
        );
        Self { admission, admin }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics;

    #[test]
    fn enum_order_matches_label_table() {
        for (i, e) in HttpError::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i);
        }
        assert_eq!(operation_str(&Operation::Connect), "CONNECT");
    }

    #[test]
    fn encodes_every_family() {
        let mut registry = metrics::registry();
        let m = AdmissionMetrics::register(&mut registry);
        m.http_error(HttpError::NotFound);
        let c = ConnectionMetrics::register(&mut registry);
        c.admin.opened();
        let text = metrics::encode(&registry);
        for needle in [
            "carto_wi_admission_requests_total{webhook=\"mutate\",kind=\"Deployment\",operation=\"CREATE\",outcome=\"patched\"} 0",
            "carto_wi_admission_duration_seconds_bucket{le=\"0.00005\",webhook=\"mutate\"} 0",
            "carto_wi_admission_violations_total{webhook=\"validate\",kind=\"ServiceAccount\",enforcement=\"deny\"} 0",
            "carto_wi_http_errors_total{reason=\"not_found\"} 1",
            "carto_wi_connections{listener=\"admin\"} 1",
            "carto_wi_accept_errors_total{listener=\"admission\"} 0",
            "carto_wi_connection_errors_total{listener=\"admission\"} 0",
            "carto_wi_idle_connections_closed_total{listener=\"admin\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
