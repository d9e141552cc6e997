//! State shared by the admission handlers: the config store, the policy settings, the admission
//! metrics.

use std::time::Duration;

use super::budget::BodyBudget;
use super::metrics::AdmissionMetrics;
use crate::config::ConfigStore;
use crate::settings::Settings;

/// Everything a request handler reads. Shared as `Arc<AppState>`.
#[derive(Debug)]
pub struct AppState {
    /// The configurations in force; replaced whole by their source, read lock-free.
    pub config: ConfigStore,
    /// Policy settings (fixed for the life of the process).
    pub settings: Settings,
    /// The admission metrics.
    pub metrics: AdmissionMetrics,
    /// How long a request (body included) may take.
    pub request_timeout: Duration,
    /// The memory all request bodies being read or reviewed may hold together.
    pub body_budget: BodyBudget,
}

impl AppState {
    /// State reading `config`, with the default body budget (its metrics unregistered).
    pub fn new(
        config: ConfigStore,
        settings: Settings,
        metrics: AdmissionMetrics,
        request_timeout: Duration,
    ) -> Self {
        Self {
            config,
            settings,
            metrics,
            request_timeout,
            body_budget: BodyBudget::unregistered(),
        }
    }

    /// The same with `budget` for the request bodies.
    pub fn with_body_budget(mut self, budget: BodyBudget) -> Self {
        self.body_budget = budget;
        self
    }
}
