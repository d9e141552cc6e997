//! Reloading files that change under a running server: the standalone `--config` file and the
//! `--tls-cert`/`--tls-key` pair.
//!
//! Files are polled by content (not by modification time), which follows every way files get
//! replaced: editors, `mv`, and the symlink swap of a Kubernetes Secret or ConfigMap volume. A
//! change is acted on once; a version that is unreadable or invalid is logged, counted and
//! rejected, and the last good version keeps serving until the files change again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tokio::task::JoinHandle;

use super::metrics::ReloadResult;
use super::state::AppState;
use super::tls::{CertResolver, PairSource, certified_key};
use crate::config::{ConfigEntry, ConfigProblem, ConfigSnapshot, WorkloadIdentityConfig};
use crate::offline::load_config_map;

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file is not UTF-8 text.
    #[error("not UTF-8 text")]
    NotText,
    /// The file holds no readable ConfigMap.
    #[error("{0}")]
    Unreadable(String),
    /// The ConfigMap breaks the rules.
    #[error("the ConfigMap is invalid ({} problems):\n{}", .0.len(), list(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn list(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("- {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Parse a standalone config file's content.
pub fn parse_config(
    bytes: &[u8],
    config_map: &str,
) -> Result<WorkloadIdentityConfig, ConfigFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| ConfigFileError::NotText)?;
    let loaded = load_config_map(text, config_map).map_err(ConfigFileError::Unreadable)?;
    loaded.config.map_err(ConfigFileError::Invalid)
}

/// The snapshot of standalone mode: `config` is the default of every namespace.
pub fn standalone_snapshot(config: WorkloadIdentityConfig) -> ConfigSnapshot {
    ConfigSnapshot::with_default(ConfigEntry::Valid(Arc::new(config)))
}

#[derive(PartialEq, Eq)]
enum Seen {
    Content(Vec<Vec<u8>>),
    Error(usize, std::io::ErrorKind),
}

/// Poll `paths` every `interval`; call `on_change` when what is read differs from what was seen
/// last (starting from `initial`, the content already in use).
async fn poll<F>(paths: Vec<PathBuf>, interval: Duration, initial: Vec<Vec<u8>>, mut on_change: F)
where
    F: FnMut(Result<Vec<Vec<u8>>, (usize, std::io::Error)>),
{
    let mut last = Seen::Content(initial);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut read = Ok(Vec::with_capacity(paths.len()));
        for (i, p) in paths.iter().enumerate() {
            match tokio::fs::read(p).await {
                Ok(c) => {
                    if let Ok(v) = &mut read {
                        v.push(c);
                    }
                }
                Err(e) => {
                    read = Err((i, e));
                    break;
                }
            }
        }
        let seen = match &read {
            Ok(c) => Seen::Content(c.clone()),
            Err((i, e)) => Seen::Error(*i, e.kind()),
        };
        if seen != last {
            last = seen;
            on_change(read);
        }
    }
}

/// Watch the standalone config file; swap the snapshot when a valid new version appears.
pub fn watch_config(
    state: Arc<AppState>,
    path: PathBuf,
    interval: Duration,
    initial: Vec<u8>,
) -> JoinHandle<()> {
    let shown = path.display().to_string();
    tokio::spawn(poll(vec![path], interval, vec![initial], move |read| {
        let result = match read {
            Err((_, e)) => {
                tracing::warn!(file = %shown, error = %e, "--config: cannot read the new version; keeping the last good configuration");
                ReloadResult::ReadError
            }
            Ok(mut c) => match parse_config(&c.remove(0), &state.settings.config_map) {
                Ok(config) => {
                    let hash = config.hash.clone();
                    state.set_config(standalone_snapshot(config));
                    tracing::info!(file = %shown, config_hash = %hash, "--config: configuration reloaded");
                    ReloadResult::Success
                }
                Err(e) => {
                    tracing::warn!(file = %shown, error = %e, "--config: the new version is rejected; keeping the last good configuration");
                    ReloadResult::Invalid
                }
            },
        };
        state.metrics.config_reload(result);
    }))
}

/// Watch the certificate and key files; serve a new pair once both files are consistent.
pub fn watch_tls(
    state: Arc<AppState>,
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
    src: PairSource,
    interval: Duration,
    initial: (Vec<u8>, Vec<u8>),
) -> JoinHandle<()> {
    let paths = vec![src.cert.clone(), src.key.clone()];
    tokio::spawn(poll(
        paths,
        interval,
        vec![initial.0, initial.1],
        move |read| {
            let result = match read {
                Err((i, e)) => {
                    let flag = if i == 0 { "--tls-cert" } else { "--tls-key" };
                    let file = if i == 0 { &src.cert } else { &src.key };
                    tracing::warn!(flag, file = %file.display(), error = %e, "cannot read the new certificate files; keeping the current certificate");
                    ReloadResult::ReadError
                }
                Ok(c) => match certified_key(&c[0], &c[1], &src, &provider) {
                    Ok(ck) => {
                        resolver.store(ck);
                        tracing::info!(cert = %src.cert.display(), key = %src.key.display(), "TLS certificate reloaded; new connections use it");
                        ReloadResult::Success
                    }
                    Err(e) => {
                        // Typically a pair caught between the writes of its two files: the next
                        // change, once both are written, is tried again.
                        tracing::warn!(error = %e, "the new certificate pair is not usable (yet); keeping the current certificate");
                        ReloadResult::Invalid
                    }
                },
            };
            state.metrics.tls_reload(result);
        },
    ))
}

/// Read a file at startup, naming the flag on error.
pub fn read_startup(flag: &'static str, path: &Path) -> Result<Vec<u8>, super::StartError> {
    std::fs::read(path).map_err(|e| super::StartError::File {
        flag,
        path: path.to_owned(),
        message: format!("cannot read: {e}"),
    })
}
