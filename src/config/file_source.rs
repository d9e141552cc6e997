//! The standalone source of configuration: the `--config` file is the default of every namespace.
//! Read at startup (any problem is fatal), then polled: a valid new version is published into the
//! [`ConfigStore`]; one that is unreadable or invalid is logged, counted and rejected, and the last
//! good version keeps serving until the file changes again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::{ConfigFileError, parse_config, standalone_snapshot};
use super::metrics::ConfigMetrics;
use super::model::WorkloadIdentityConfig;
use super::store::ConfigStore;
use crate::file_poll::{self, Read};
use crate::metrics::ReloadResult;
use crate::shutdown::Shutdown;

/// The config file, with the content in use.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    config_map: String,
    in_use: Vec<u8>,
}

impl ConfigFile {
    /// Read and parse the file; `config_map` picks the ConfigMap when the file holds several.
    pub fn load(
        path: PathBuf,
        config_map: &str,
    ) -> Result<(Self, WorkloadIdentityConfig), ConfigFileError> {
        let bytes = std::fs::read(&path).map_err(ConfigFileError::Read)?;
        let config = parse_config(&bytes, config_map)?;
        let file = Self {
            path,
            config_map: config_map.to_owned(),
            in_use: bytes,
        };
        Ok((file, config))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Poll the file every `interval` until `shutdown` stops; publish each valid new version.
    pub async fn watch(
        self,
        store: ConfigStore,
        interval: Duration,
        metrics: ConfigMetrics,
        shutdown: Shutdown,
    ) {
        let Self {
            path,
            config_map,
            in_use,
        } = self;
        let shown = path.display().to_string();
        file_poll::poll(vec![path], interval, vec![in_use], shutdown, move |read| {
            metrics.config_reload(reload(read, &shown, &config_map, &store));
        })
        .await;
    }
}

fn reload(read: Read, shown: &str, config_map: &str, store: &ConfigStore) -> ReloadResult {
    match read {
        Err((_, e)) => {
            tracing::warn!(file = %shown, error = %e, "--config: cannot read the new version; keeping the last good configuration");
            ReloadResult::ReadError
        }
        Ok(mut c) => match parse_config(&c.remove(0), config_map) {
            Ok(config) => {
                let hash = config.hash.clone();
                store.publish(standalone_snapshot(config));
                tracing::info!(file = %shown, config_hash = %hash, "--config: configuration reloaded");
                ReloadResult::Success
            }
            Err(e) => {
                tracing::warn!(file = %shown, error = %e, "--config: the new version is rejected; keeping the last good configuration");
                ReloadResult::Invalid
            }
        },
    }
}
