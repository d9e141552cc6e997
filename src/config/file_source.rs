//! The standalone source of configuration: the `--config` file is the default of every namespace.
//! Read at startup (any problem is fatal), then polled: a valid new version is published into the
//! [`ConfigStore`]; one that is unreadable, over [`MAX_CONFIG_FILE_BYTES`] or invalid is logged
//! once, counted and rejected, and the last good version keeps serving until the file changes
//! again. Polling reads the file only when `stat` says it changed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::extra::ExtraEnvAllowlist;
use super::load::{ConfigFileError, parse_config, standalone_snapshot};
use super::metrics::ConfigMetrics;
use super::model::WorkloadIdentityConfig;
use super::store::ConfigStore;
use crate::file_poll::{self, Read};
use crate::metrics::ReloadResult;
use crate::shutdown::Shutdown;

/// The largest `--config` file accepted: 1 MiB (a real one is a few hundred bytes; Kubernetes
/// caps a ConfigMap at 1 MiB too).
pub const MAX_CONFIG_FILE_BYTES: u64 = file_poll::MAX_FILE_BYTES;

/// The config file, with the content in use.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    config_map: String,
    allowed: ExtraEnvAllowlist,
    in_use: Vec<u8>,
}

impl ConfigFile {
    /// Read and parse the file; `config_map` picks the ConfigMap when the file holds several,
    /// `allowed` the pass-through keys it may hold.
    pub fn load(
        path: PathBuf,
        config_map: &str,
        allowed: &ExtraEnvAllowlist,
    ) -> Result<(Self, WorkloadIdentityConfig), ConfigFileError> {
        let bytes = file_poll::read_capped(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::FileTooLarge => ConfigFileError::TooLarge(e.to_string()),
            _ => ConfigFileError::Read(e),
        })?;
        let config = parse_config(&bytes, config_map, allowed)?;
        let file = Self {
            path,
            config_map: config_map.to_owned(),
            allowed: allowed.clone(),
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
            allowed,
            in_use,
        } = self;
        let shown = path.display().to_string();
        file_poll::poll(vec![path], interval, vec![in_use], shutdown, move |read| {
            metrics.config_reload(reload(read, &shown, (&config_map, &allowed), &store));
        })
        .await;
    }
}

fn reload(
    read: Read,
    shown: &str,
    (config_map, allowed): (&str, &ExtraEnvAllowlist),
    store: &ConfigStore,
) -> ReloadResult {
    match read {
        Err((_, e)) => {
            tracing::warn!(file = %shown, error = %e, "--config: cannot read the new version; keeping the last good configuration");
            ReloadResult::ReadError
        }
        Ok(mut c) => match parse_config(&c.remove(0), config_map, allowed) {
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

#[cfg(test)]
mod tests {
    use std::fs::{File, FileTimes};
    use std::time::SystemTime;

    use super::*;
    use crate::config::Resolved;
    use crate::file_poll::Poller;

    const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: carto-workload-identity\ndata:\n  WORKSPACE_WORKLOAD_IDENTITY_WORKFLOWS_TEMP: acme-analytics.carto_workflows_temp\n  WORKSPACE_WORKLOAD_IDENTITY_BILLING_PROJECT: acme-gke-prod\n  WORKSPACE_WORKLOAD_IDENTITY_SERVICE_ACCOUNT_EMAIL: carto-wi@acme-analytics.iam.gserviceaccount.com\n  WORKSPACE_WORKLOAD_IDENTITY_CONNECTION_OWNER_ID: \"auth0|3idsj230990sj4wsddd10\"\n";

    /// Replace `path` by a new file renamed over it, dated an hour ago (settled).
    fn replace(path: &Path, content: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, content).unwrap();
        let then = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&tmp)
            .unwrap()
            .set_times(FileTimes::new().set_modified(then))
            .unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn hash_in_force(store: &ConfigStore) -> String {
        match store.load().resolve("any") {
            Resolved::Config(c, _) => c.hash.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_file_over_the_limit_at_startup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let big = format!("{CONFIG}#{}\n", "x".repeat(MAX_CONFIG_FILE_BYTES as usize));
        std::fs::write(&path, big).unwrap();
        let e = ConfigFile::load(path, "carto-workload-identity", &ExtraEnvAllowlist::none())
            .unwrap_err();
        assert!(matches!(e, ConfigFileError::TooLarge(_)), "{e:?}");
        assert!(e.to_string().contains("larger than the 1 MiB limit"), "{e}");
    }

    #[test]
    fn an_oversized_new_version_is_refused_and_the_last_good_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        replace(&path, CONFIG);
        let (file, config) = ConfigFile::load(
            path.clone(),
            "carto-workload-identity",
            &ExtraEnvAllowlist::none(),
        )
        .unwrap();
        let good = config.hash.clone();
        let store = ConfigStore::new(standalone_snapshot(config));
        let mut poller = Poller::new(vec![path.clone()], vec![file.in_use]);
        assert!(poller.check().is_none());
        // Over the limit, even though the ConfigMap in it is valid: refused, counted as a read
        // error once, the last good configuration kept.
        let padded = format!("{CONFIG}#{}\n", "x".repeat(MAX_CONFIG_FILE_BYTES as usize));
        replace(&path, &padded.replace("acme-gke-prod", "other-project"));
        let read = poller.check().expect("the change is seen");
        let shown = path.display().to_string();
        let r = reload(
            read,
            &shown,
            ("carto-workload-identity", &ExtraEnvAllowlist::none()),
            &store,
        );
        assert_eq!(r, ReloadResult::ReadError);
        assert_eq!(hash_in_force(&store), good);
        assert!(poller.check().is_none(), "reported once");
        // A valid version under the limit is taken.
        replace(&path, &CONFIG.replace("acme-gke-prod", "other-project"));
        let read = poller.check().expect("the change is seen");
        let r = reload(
            read,
            &shown,
            ("carto-workload-identity", &ExtraEnvAllowlist::none()),
            &store,
        );
        assert_eq!(r, ReloadResult::Success);
        assert_ne!(hash_in_force(&store), good);
    }
}
