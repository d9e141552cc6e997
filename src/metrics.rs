//! Prometheus metrics (`prometheus-client`), prefix `carto_wi_`: one [`Registry`] built once at
//! startup, into which each group registers its series (`AdmissionMetrics::register`,
//! `ConfigMetrics::register`, `TlsMetrics::register`, ...), then frozen and encoded by the admin
//! `/metrics`.
//!
//! Every label value is known in advance, so every series is created at startup and the hot path
//! only does atomic increments on pre-resolved handles: no lock, no map lookup, no allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histogram: 50 µs to 30 s, the longest webhook timeout
/// (the alert on p99 over the timeout needs bounds past any timeout the chart allows).
pub const DURATION_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The registry every group registers into, with `carto_wi_build_info` already in it.
pub fn registry() -> Registry {
    let mut registry = Registry::with_prefix("carto_wi");
    let build = Family::<VersionLabels, Gauge>::default();
    build
        .get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register("build_info", "Build information (always 1)", build);
    registry
}

/// The registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(16 * 1024);
    text::encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

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
    /// Every result, in label-table order.
    pub const ALL: [Self; 3] = [Self::Success, Self::Invalid, Self::ReadError];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Invalid => "invalid",
            Self::ReadError => "read_error",
        }
    }
}

/// A `{result=...}` counter family over every [`ReloadResult`].
#[derive(Debug, Clone)]
pub struct ReloadCounters {
    by_result: Vec<Counter>,
}

impl ReloadCounters {
    /// Create the family's series and register it as `name`.
    pub fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<ResultLabels, Counter>::default();
        let by_result = ReloadResult::ALL
            .iter()
            .map(|r| {
                family
                    .get_or_create(&ResultLabels { result: r.as_str() })
                    .clone()
            })
            .collect();
        registry.register(name, help, family);
        Self { by_result }
    }

    /// Count one reload.
    pub fn inc(&self, r: ReloadResult) {
        self.by_result[r as usize].inc();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_order_matches_label_table() {
        for (i, r) in ReloadResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn duration_buckets_ascend_past_the_longest_webhook_timeout() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        // timeoutSeconds is at most 30 (admissionregistration.k8s.io/v1).
        assert_eq!(DURATION_BUCKETS.last(), Some(&30.0));
    }

    #[test]
    fn histogram_buckets_and_sum() {
        let h = AtomicHistogram::new(&DURATION_BUCKETS);
        h.observe(Duration::from_micros(10));
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(60));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count(), 4);
        let c: Vec<u64> = h
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(c[0], 2, "10µs and 50µs are <= 50µs");
        assert_eq!(c[1], 1);
        assert_eq!(c[DURATION_BUCKETS.len()], 1, "60s goes to +Inf");
    }

    #[test]
    fn build_info_and_reloads() {
        let mut registry = registry();
        let reloads = ReloadCounters::register(&mut registry, "x_reloads", "Test");
        reloads.inc(ReloadResult::Invalid);
        let text = encode(&registry);
        for needle in [
            "carto_wi_build_info{version=\"",
            "carto_wi_x_reloads_total{result=\"invalid\"} 1",
            "carto_wi_x_reloads_total{result=\"success\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
