//! State shared by the handlers: the config snapshot (swapped atomically on reload), the policy
//! settings, the metrics and the readiness flags.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::metrics::Metrics;
use crate::config::ConfigSnapshot;
use crate::settings::Settings;

/// Everything a request handler reads. Shared as `Arc<AppState>`.
#[derive(Debug)]
pub struct AppState {
    /// The configurations in force; replaced whole on reload, read lock-free.
    pub config: ArcSwap<ConfigSnapshot>,
    /// Policy settings (fixed for the life of the process).
    pub settings: Settings,
    /// Metrics.
    pub metrics: Metrics,
    /// Readiness conditions.
    pub readiness: Readiness,
    /// How long a request (body included) may take.
    pub request_timeout: Duration,
}

impl AppState {
    /// State with an initial snapshot; nothing is ready yet.
    pub fn new(snapshot: ConfigSnapshot, settings: Settings, request_timeout: Duration) -> Self {
        Self {
            config: ArcSwap::from_pointee(snapshot),
            settings,
            metrics: Metrics::new(),
            readiness: Readiness::default(),
            request_timeout,
        }
    }

    /// Replace the configuration snapshot (in-flight requests keep the one they loaded).
    pub fn set_config(&self, snapshot: ConfigSnapshot) {
        self.config.store(Arc::new(snapshot));
    }
}

/// The conditions `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness {
    tls: AtomicBool,
    config: AtomicBool,
    serving: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// The serving certificate is loaded.
    pub fn set_tls_loaded(&self) {
        self.tls.store(true, Ordering::Release);
    }

    /// The configuration is loaded (synced, in cluster mode).
    pub fn set_config_loaded(&self) {
        self.config.store(true, Ordering::Release);
    }

    /// The admission listener accepts connections.
    pub fn set_serving(&self) {
        self.serving.store(true, Ordering::Release);
    }

    /// Shutdown has begun: not ready any more, for good.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Is shutdown under way?
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Ready, or the reasons why not.
    pub fn check(&self) -> Result<(), Vec<&'static str>> {
        let mut why = Vec::new();
        if self.draining() {
            why.push("shutting down: draining in-flight requests");
        }
        if !self.tls.load(Ordering::Acquire) {
            why.push("TLS certificate not loaded");
        }
        if !self.config.load(Ordering::Acquire) {
            why.push("configuration not loaded");
        }
        if !self.serving.load(Ordering::Acquire) {
            why.push("admission listener not accepting yet");
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}
