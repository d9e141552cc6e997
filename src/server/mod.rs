//! The HTTPS admission server (`serve`) and its plain-HTTP admin listener.
//!
//! - [`args`] — flags.
//! - [`tls`]: certificate loading, the rotating certificate resolver, mutual TLS.
//! - [`router`]: `POST /mutate` and `POST /validate` over the pure admission core.
//! - [`admin`]: `/livez`, `/readyz`, `/metrics`; [`metrics`]: the Prometheus series.
//! - [`state`]: the config snapshot (swapped atomically on reload) and readiness.
//! - [`reload`]: polling the config and certificate files for changes.
//! - [`shutdown`] — SIGTERM/SIGINT.
//! - [`certs`]: a small CA for the `certs` command and ephemeral certificates.
//!
//! [`Server::start`] loads everything and binds both listeners; [`Server::run`] serves until a
//! shutdown future completes, then drains. [`run`] is the `serve` command around them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub mod admin;
pub mod args;
pub mod certs;
pub mod metrics;
pub mod reload;
pub mod router;
pub mod shutdown;
pub mod state;
pub mod tls;

pub use args::{LogFormat, ServeArgs};
pub use router::router;
pub use state::AppState;

use metrics::HandshakeFailure;
use reload::ConfigFileError;
use tls::{CertResolver, PairSource, TlsError};

/// Validity of the ephemeral CA and certificate, in days.
const EPHEMERAL_DAYS: u32 = 30;

/// Why the server cannot start. Each message names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No `--config`: cluster mode, which this build does not have.
    #[error(
        "cluster mode (serve without --config) is not available in this build; pass --config FILE \
         to run standalone with a ConfigMap file as the configuration of every namespace"
    )]
    ClusterModeUnavailable,
    /// The `--config` file cannot be used.
    #[error("--config {}: {error}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ConfigFileError,
    },
    /// A file named by a flag cannot be used.
    #[error("{flag} {}: {message}", .path.display())]
    File {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Certificates, keys or client CAs.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ephemeral certificate could not be made.
    #[error("cannot generate the ephemeral certificate: {0}")]
    Ephemeral(certs::CertError),
    /// A listener could not be bound.
    #[error("{flag} {addr}: cannot listen: {error}")]
    Bind {
        /// The flag.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The log filter does not parse.
    #[error("--log-level {value:?}: {message}")]
    LogFilter {
        /// The filter given.
        value: String,
        /// Why.
        message: String,
    },
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

/// A server with everything loaded and both listeners bound, not yet accepting admission
/// connections (the admin listener already answers).
pub struct Server {
    state: Arc<AppState>,
    listener: TcpListener,
    local_addr: SocketAddr,
    admin_addr: SocketAddr,
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    admin_stop: watch::Sender<bool>,
    admin_task: JoinHandle<()>,
    watchers: Vec<JoinHandle<()>>,
    ephemeral_ca: Option<PathBuf>,
    args: ServeArgs,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("admin_addr", &self.admin_addr)
            .field("ephemeral_ca", &self.ephemeral_ca)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Load the configuration and the certificates, bind both listeners, start the admin
    /// listener and the file watchers.
    pub async fn start(args: ServeArgs) -> Result<Self, StartError> {
        let config_path = args
            .config
            .clone()
            .ok_or(StartError::ClusterModeUnavailable)?;
        let settings = args.policy.settings();

        // Configuration.
        let config_bytes = reload::read_startup("--config", &config_path)?;
        let config =
            reload::parse_config(&config_bytes, &settings.config_map).map_err(|error| {
                StartError::Config {
                    path: config_path.clone(),
                    error,
                }
            })?;
        tracing::info!(file = %config_path.display(), config_hash = %config.hash, "configuration loaded (standalone: the default for every namespace)");
        for w in &config.warnings {
            tracing::warn!(file = %config_path.display(), warning = %w, "configuration warning");
        }
        let state = Arc::new(AppState::new(
            reload::standalone_snapshot(config),
            settings,
            args.http.request_timeout,
        ));
        state.readiness.set_config_loaded();

        // Certificates.
        let provider = tls::provider();
        let (resolver, tls_files, ephemeral) = match (&args.tls.tls_cert, &args.tls.tls_key) {
            (Some(cert), Some(key)) => {
                let src = PairSource {
                    cert: cert.clone(),
                    key: key.clone(),
                };
                let cert_pem = reload::read_startup("--tls-cert", cert)?;
                let key_pem = reload::read_startup("--tls-key", key)?;
                let ck = tls::certified_key(&cert_pem, &key_pem, &src, &provider)?;
                tracing::info!(cert = %cert.display(), key = %key.display(), "TLS certificate loaded; watching it for rotation");
                (
                    Arc::new(CertResolver::new(ck)),
                    Some((src, cert_pem, key_pem)),
                    None,
                )
            }
            _ => {
                let (ck, ca_path) = ephemeral(&args, &provider)?;
                (Arc::new(CertResolver::new(ck)), None, Some(ca_path))
            }
        };
        let client_roots = match &args.tls.client_ca {
            Some(p) => {
                let roots = tls::load_client_roots(p)?;
                tracing::info!(client_ca = %p.display(), "mutual TLS: clients must present a certificate signed by --client-ca");
                Some(roots)
            }
            None => None,
        };
        let server_config = tls::server_config(provider.clone(), resolver.clone(), client_roots)?;
        let acceptor = TlsAcceptor::from(Arc::new(server_config));
        state.readiness.set_tls_loaded();

        // Listeners.
        let bind = |flag, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|error| StartError::Bind { flag, addr, error })
        };
        let listener = bind("--listen", args.listen).await?;
        let admin_listener = bind("--admin-listen", args.admin.admin_listen).await?;
        let local_addr = listener.local_addr().map_err(StartError::Runtime)?;
        let admin_addr = admin_listener.local_addr().map_err(StartError::Runtime)?;

        let (admin_stop, mut admin_stop_rx) = watch::channel(false);
        let admin_router = admin::router(state.clone());
        let admin_task = tokio::spawn(async move {
            let stop = async move {
                let _ = admin_stop_rx.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(admin_listener, admin_router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
        tracing::info!(addr = %admin_addr, "admin listener (plain HTTP): /livez /readyz /metrics");

        // Watchers.
        let interval = args.reload_interval;
        let mut watchers = vec![reload::watch_config(
            state.clone(),
            config_path,
            interval,
            config_bytes,
        )];
        if let Some((src, cert_pem, key_pem)) = tls_files {
            watchers.push(reload::watch_tls(
                state.clone(),
                resolver.clone(),
                provider,
                src,
                interval,
                (cert_pem, key_pem),
            ));
        }

        Ok(Self {
            state,
            listener,
            local_addr,
            admin_addr,
            acceptor,
            resolver,
            admin_stop,
            admin_task,
            watchers,
            ephemeral_ca: ephemeral,
            args,
        })
    }

    /// Address of the HTTPS admission listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Address of the plain-HTTP admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The shared state (config snapshot, metrics, readiness).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The certificate resolver (the pair served to new connections).
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// Where the ephemeral CA certificate was written, when no `--tls-cert` was given.
    pub fn ephemeral_ca(&self) -> Option<&Path> {
        self.ephemeral_ca.as_deref()
    }

    /// Serve until `shutdown` completes, then drain: readiness turns false at once, the listener
    /// closes (after `--shutdown-delay`), in-flight requests finish within `--shutdown-timeout`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            state,
            listener,
            local_addr,
            acceptor,
            admin_stop,
            admin_task,
            watchers,
            args,
            ..
        } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(args.http.header_read_timeout)
            .keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(
            listener,
            acceptor,
            Arc::new(builder),
            router(state.clone()),
            state.clone(),
            args.tls.tls_handshake_timeout,
            stop_rx,
        ));
        state.readiness.set_serving();
        tracing::info!(addr = %local_addr, "admission listener (HTTPS): POST /mutate, POST /validate");

        shutdown.await;
        state.readiness.set_draining();
        tracing::info!("shutting down: readiness is false; draining");
        if !args.http.shutdown_delay.is_zero() {
            tokio::time::sleep(args.http.shutdown_delay).await;
        }
        let _ = stop_tx.send(true);
        let graceful = match accept.await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "the accept loop failed");
                GracefulShutdown::new()
            }
        };
        let open = graceful.count();
        match tokio::time::timeout(args.http.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!(connections = open, "drained"),
            Err(_) => tracing::warn!(
                timeout = ?args.http.shutdown_timeout,
                "connections still open after --shutdown-timeout; closing them"
            ),
        }
        for w in watchers {
            w.abort();
        }
        let _ = admin_stop.send(true);
        if tokio::time::timeout(Duration::from_secs(2), admin_task)
            .await
            .is_err()
        {
            tracing::warn!("admin listener did not stop in time");
        }
        tracing::info!("stopped");
    }
}

/// Make the ephemeral CA and serving certificate and write the CA to `--ephemeral-ca-out`.
fn ephemeral(
    args: &ServeArgs,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(rustls::sign::CertifiedKey, PathBuf), StartError> {
    let ca = certs::CertificateAuthority::new("carto-wi-webhook ephemeral CA", EPHEMERAL_DAYS)
        .map_err(StartError::Ephemeral)?;
    let leaf = ca
        .issue_server(&certs::localhost_names(), EPHEMERAL_DAYS)
        .map_err(StartError::Ephemeral)?;
    let src = PairSource {
        cert: "(ephemeral certificate)".into(),
        key: "(ephemeral key)".into(),
    };
    let ck = tls::certified_key(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        &src,
        provider,
    )?;
    let path = args
        .tls
        .ephemeral_ca_out
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("carto-wi-webhook-ca.crt"));
    certs::write_file(&path, ca.cert_pem().as_bytes(), false).map_err(|e| StartError::File {
        flag: "--ephemeral-ca-out",
        path: path.clone(),
        message: match e {
            certs::CertError::Write { error, .. } => format!("cannot write: {error}"),
            other => other.to_string(),
        },
    })?;
    tracing::info!(ca = %path.display(), names = "localhost, 127.0.0.1, ::1", "no --tls-cert/--tls-key: serving an ephemeral certificate; its CA is written to the file named here");
    Ok((ck, path))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    state: Arc<AppState>,
    handshake_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            biased;
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    state.metrics.handshake_failure(HandshakeFailure::Error);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    state.metrics.handshake_failure(HandshakeFailure::Timeout);
                    tracing::debug!(%peer, "TLS handshake timed out (--tls-handshake-timeout)");
                    return;
                }
            };
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful
}

/// Set up logging on standard error, as JSON lines or text; the guard flushes it when dropped.
pub fn init_logging(
    args: &args::LogArgs,
) -> Result<Option<tracing_appender::non_blocking::WorkerGuard>, StartError> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| StartError::LogFilter {
        value: args.log_level.clone(),
        message: e.to_string(),
    })?;
    // Lines are written by a dedicated thread, so a request's log line never costs its worker a
    // write(2). Not lossy: when the buffer is full the caller waits rather than drop audit lines.
    // The queue is bounded at 4,096 lines (the default 128,000 preallocates ~4 MiB).
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(4096)
        .lossy(false)
        .thread_name("carto-wi-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match args.log_format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Already installed (e.g. by a test harness): keep that one (and drop our writer).
    Ok(installed.is_ok().then_some(guard))
}

/// Run `serve`: log setup, runtime, start, serve until SIGTERM/SIGINT, drain, exit.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Flushes the log writer when `run` returns, whatever the outcome.
    let _log_guard = init_logging(&args.log)?;
    if args.config.is_none() {
        return Err(StartError::ClusterModeUnavailable.into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let signals = shutdown::Signals::install().map_err(StartError::Runtime)?;
        let server = Server::start(args).await?;
        if let Some(ca) = server.ephemeral_ca() {
            println!(
                "ephemeral CA certificate: {path}\n  try: curl --cacert {path} https://localhost:{port}/mutate -H 'Content-Type: application/json' -d @examples/admission-review-deployment.json",
                path = ca.display(),
                port = server.local_addr().port()
            );
        }
        let count = signals.counter();
        let second = shutdown::reached(count.clone(), 2);
        tokio::select! {
            () = server.run(shutdown::reached(count, 1)) => Ok(()),
            () = second => Err(anyhow::anyhow!(
                "second shutdown signal: stopped without waiting for in-flight requests"
            )),
        }
    })
}
