//! The IAM group of metrics: `iam_binding{state}` (bindings checked, by state) and
//! `iam_requests{outcome}` (getIamPolicy calls, by outcome).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::client::OUTCOMES;
use super::policy::BindingState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The IAM series.
#[derive(Debug, Clone, Default)]
pub struct IamMetrics {
    bindings: Family<StateLabels, Gauge>,
    requests: Family<OutcomeLabels, Counter>,
}

impl IamMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for s in BindingState::ALL {
            let _ = m.bindings.get_or_create(&StateLabels { state: s.as_str() });
        }
        for outcome in OUTCOMES {
            let _ = m.requests.get_or_create(&OutcomeLabels { outcome });
        }
        registry.register(
            "iam_binding",
            "Workload Identity bindings checked (namespace and service account pairs), by state",
            m.bindings.clone(),
        );
        registry.register(
            "iam_requests",
            "IAM getIamPolicy requests, by outcome",
            m.requests.clone(),
        );
        m
    }

    /// Set the number of bindings in `state`.
    pub fn set_bindings(&self, state: BindingState, n: usize) {
        self.bindings
            .get_or_create(&StateLabels {
                state: state.as_str(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count one request with `outcome` (a label of [`OUTCOMES`]).
    pub fn request(&self, outcome: &'static str) {
        self.requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}
