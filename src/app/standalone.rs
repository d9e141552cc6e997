//! Standalone mode: the `--config` file is the configuration of every namespace, and the serving
//! certificate comes from `--tls-cert`/`--tls-key` files or is ephemeral. Both files are polled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Common, ServeArgs, Sources, StartError, Task};
use crate::config::{ConfigFile, ConfigStore, standalone_snapshot};
use crate::pki::{self, CertResolver, FilePair};

/// Load the config file and the certificate; the tasks poll them.
pub(crate) fn start(
    args: &ServeArgs,
    config_path: &Path,
    common: &Common,
) -> Result<Sources, StartError> {
    let (store, config_task) = config(args, config_path, common)?;
    let certs = certificates(args, common)?;
    Ok(Sources {
        store,
        resolver: certs.resolver,
        ephemeral_ca: certs.ephemeral_ca,
        tasks: [Some(config_task), certs.task]
            .into_iter()
            .flatten()
            .collect(),
    })
}

/// The `--config` file, as the default of every namespace.
fn config(
    args: &ServeArgs,
    path: &Path,
    common: &Common,
) -> Result<(ConfigStore, Task), StartError> {
    let ready = common.readiness.add("configuration");
    let settings = args.policy.settings();
    let (file, config) =
        ConfigFile::load(path.to_owned(), &settings.config_map, &settings.extra_env).map_err(
            |error| StartError::Config {
                path: path.to_owned(),
                error,
            },
        )?;
    tracing::info!(file = %path.display(), config_hash = %config.hash, "configuration loaded (standalone: the default for every namespace)");
    for w in &config.warnings {
        tracing::warn!(file = %path.display(), warning = %w, "configuration warning");
    }
    let store = ConfigStore::new(standalone_snapshot(config));
    ready.release();
    let task = file.watch(
        store.clone(),
        args.reload_interval,
        common.metrics.config.clone(),
        common.shutdown.clone(),
    );
    Ok((store, Box::pin(task)))
}

/// The serving certificate and what keeps it current.
pub(crate) struct Certificates {
    pub(crate) resolver: Arc<CertResolver>,
    /// Polls the files, when the certificate comes from files.
    pub(crate) task: Option<Task>,
    /// Where the CA of an ephemeral certificate was written.
    pub(crate) ephemeral_ca: Option<PathBuf>,
}

/// The serving certificate: the `--tls-cert`/`--tls-key` files (polled), or an ephemeral one.
pub(crate) fn certificates(args: &ServeArgs, common: &Common) -> Result<Certificates, StartError> {
    let ready = common.readiness.add("TLS certificate");
    let provider = &common.provider;
    let loaded = match (&args.tls.tls_cert, &args.tls.tls_key) {
        (Some(cert), Some(key)) => {
            let (files, ck) = FilePair::load(cert.clone(), key.clone(), provider)?;
            tracing::info!(cert = %cert.display(), key = %key.display(), "TLS certificate loaded; watching it for rotation");
            let resolver = Arc::new(CertResolver::new(ck));
            let task = files.watch(
                resolver.clone(),
                provider.clone(),
                args.reload_interval,
                common.metrics.tls.clone(),
                common.shutdown.clone(),
            );
            Certificates {
                resolver,
                task: Some(Box::pin(task)),
                ephemeral_ca: None,
            }
        }
        _ => {
            let ca_out = args
                .tls
                .ephemeral_ca_out
                .clone()
                .unwrap_or_else(|| std::env::temp_dir().join("carto-wi-webhook-ca.crt"));
            let ck = pki::ephemeral(&ca_out, provider)?;
            Certificates {
                resolver: Arc::new(CertResolver::new(ck)),
                task: None,
                ephemeral_ca: Some(ca_out),
            }
        }
    };
    ready.release();
    Ok(loaded)
}
