//! The config group of metrics: `config_reloads` (the standalone `--config` file).

use prometheus_client::registry::Registry;

use crate::metrics::{ReloadCounters, ReloadResult};

/// The config series.
#[derive(Debug, Clone)]
pub struct ConfigMetrics {
    reloads: ReloadCounters,
}

impl ConfigMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            reloads: ReloadCounters::register(
                registry,
                "config_reloads",
                "Reloads of the --config file after a change, by result",
            ),
        }
    }

    /// Count a reload of the config file.
    pub fn config_reload(&self, r: ReloadResult) {
        self.reloads.inc(r);
    }
}
