//! The `serve` process: runtime, signals, the components started in order, the wait, the drain.
//!
//! [`App::start`] registers the metrics, loads the configuration and the certificate (through the
//! mode: [`standalone`] with `--config`), binds both listeners and starts the admin listener and
//! the sources; [`App::run`] serves until the [`Shutdown`] begins, drains, then stops the rest.
//! [`run`] is the `serve` command around them.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigFileError, ConfigMetrics, ConfigStore};
use crate::duration::parse_interval;
use crate::logging::{LogArgs, LogFilterError};
use crate::metrics;
use crate::pki::{self, CertResolver, EphemeralError, TlsError, TlsMetrics};
use crate::readiness::{Readiness, ReadinessHandle};
use crate::server::admin::STOP_TIMEOUT;
use crate::server::{
    AdminArgs, AdminListener, AdminState, AdmissionListener, AdmissionMetrics, AppState, BindError,
    BodyBudget, BudgetMetrics, ConnectionMetrics, HttpArgs, ListenerMetrics, TlsArgs,
};
use crate::settings::PolicyArgs;
use crate::shutdown::{Shutdown, Signals};

pub mod cluster;
pub mod standalone;

/// Flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the HTTPS admission listener.
    #[arg(
        long,
        env = "CARTO_WI_LISTEN",
        default_value = "0.0.0.0:8443",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Standalone mode: this ConfigMap YAML file is the configuration of every namespace. It is
    /// re-read when its content changes; an invalid new version is rejected and the last good one
    /// keeps serving. Without it the server runs in cluster mode.
    #[arg(long, env = "CARTO_WI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// How often --config, --tls-cert and --tls-key are checked for changes (e.g. 1s, 500ms).
    #[arg(long, env = "CARTO_WI_RELOAD_INTERVAL", default_value = "1s", value_name = "DURATION", value_parser = parse_interval)]
    pub reload_interval: Duration,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub http: HttpArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub admin: AdminArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub log: LogArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub policy: PolicyArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub cluster: crate::cluster::ClusterArgs,
}

/// Why the server cannot start. Each message names the flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Cluster mode cannot reach or use the cluster.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::Error),
    /// The self-managed certificate's flags are inconsistent.
    #[error(transparent)]
    SelfManaged(#[from] crate::cluster::certs::SelfManagedError),
    /// The `--config` file cannot be used.
    #[error("--config {}: {error}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        error: ConfigFileError,
    },
    /// Certificates, keys or client CAs.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ephemeral certificate could not be made or its CA written.
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    /// A listener could not be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The log filter does not parse.
    #[error(transparent)]
    LogFilter(#[from] LogFilterError),
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

/// A background component (a config or certificate source): spawned once both listeners are
/// bound, it ends when the [`Shutdown`] stops.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The metric groups of every mode, registered in one registry at startup.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    pub(crate) admission: AdmissionMetrics,
    pub(crate) config: ConfigMetrics,
    pub(crate) tls: TlsMetrics,
    pub(crate) connections: ConnectionMetrics,
    pub(crate) body_budget: BudgetMetrics,
}

impl Metrics {
    fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        Self {
            admission: AdmissionMetrics::register(registry),
            config: ConfigMetrics::register(registry),
            tls: TlsMetrics::register(registry),
            connections: ConnectionMetrics::register(registry),
            body_budget: BudgetMetrics::register(registry),
        }
    }
}

/// What a mode (standalone; later cluster) is given to start its sources.
#[derive(Debug)]
pub(crate) struct Common {
    pub(crate) readiness: Readiness,
    pub(crate) shutdown: Shutdown,
    pub(crate) metrics: Metrics,
    pub(crate) provider: Arc<rustls::crypto::CryptoProvider>,
}

/// What a mode hands back: where the configuration and the certificate are, and the tasks that
/// keep them current.
pub(crate) struct Sources {
    pub(crate) store: ConfigStore,
    pub(crate) resolver: Arc<CertResolver>,
    pub(crate) ephemeral_ca: Option<PathBuf>,
    pub(crate) tasks: Vec<Task>,
}

/// The process, started: configuration and certificate loaded, both listeners bound, the admin
/// listener and the sources running; admission connections not accepted yet.
pub struct App {
    state: Arc<AppState>,
    listener: AdmissionListener,
    admin_addr: SocketAddr,
    admin_task: JoinHandle<()>,
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    tls_metrics: TlsMetrics,
    listener_metrics: ListenerMetrics,
    tasks: Vec<JoinHandle<()>>,
    ephemeral_ca: Option<PathBuf>,
    listening: ReadinessHandle,
    shutdown: Shutdown,
    args: ServeArgs,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("local_addr", &self.listener.local_addr())
            .field("admin_addr", &self.admin_addr)
            .field("ephemeral_ca", &self.ephemeral_ca)
            .finish_non_exhaustive()
    }
}

/// What every admission request reads: the config store, the settings, the metrics, the time
/// and memory budgets.
fn admission_state(args: &ServeArgs, store: ConfigStore, metrics: &Metrics) -> Arc<AppState> {
    let budget = BodyBudget::new(args.http.request_body_budget, metrics.body_budget.clone());
    Arc::new(
        AppState::new(
            store,
            args.policy.settings(),
            metrics.admission.clone(),
            args.http.request_timeout,
        )
        .with_body_budget(budget),
    )
}

impl App {
    /// Start everything but the admission listener's accept loop; `shutdown` stops it all.
    pub async fn start(args: ServeArgs, shutdown: Shutdown) -> Result<Self, StartError> {
        let mut registry = metrics::registry();
        let metrics = Metrics::register(&mut registry);
        let readiness = Readiness::new(shutdown.clone());
        let common = Common {
            readiness: readiness.clone(),
            shutdown: shutdown.clone(),
            metrics: metrics.clone(),
            provider: pki::provider(),
        };
        // A mode registers its own metric groups (`&mut registry`) here, before the registry is
        // frozen into the admin listener's `Arc`.
        let sources = match &args.config {
            Some(path) => standalone::start(&args, path, &common)?,
            None => cluster::start(&args, &common, &mut registry).await?,
        };
        let registry = Arc::new(registry);

        let listening = readiness.add("admission listener accepting");
        let acceptor = crate::server::tls::acceptor(
            common.provider.clone(),
            sources.resolver.clone(),
            args.tls.client_ca.as_deref(),
        )?;
        let listener = AdmissionListener::bind(args.listen).await?;
        let admin = AdminListener::bind(args.admin.admin_listen).await?;
        let admin_addr = admin.local_addr();
        let admin_task = admin
            .spawn(
                AdminState {
                    readiness,
                    registry,
                },
                &args.admin,
                metrics.connections.admin.clone(),
                shutdown.clone(),
            )
            .map_err(StartError::Runtime)?;
        let tasks = sources.tasks.into_iter().map(tokio::spawn).collect();
        let state = admission_state(&args, sources.store, &metrics);
        Ok(Self {
            state,
            listener,
            admin_addr,
            admin_task,
            acceptor,
            resolver: sources.resolver,
            tls_metrics: metrics.tls,
            listener_metrics: metrics.connections.admission,
            tasks,
            ephemeral_ca: sources.ephemeral_ca,
            listening,
            shutdown,
            args,
        })
    }

    /// Address of the HTTPS admission listener.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// Address of the plain-HTTP admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The state the admission handlers read (config store, settings, metrics).
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

    /// The shutdown every component waits on.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Serve until the shutdown begins, then drain: readiness turns false at once, the listener
    /// closes (after `--shutdown-delay`), in-flight requests finish within `--shutdown-timeout`;
    /// then the admin listener and the sources stop.
    pub async fn run(self) {
        let Self {
            state,
            listener,
            admin_task,
            acceptor,
            tls_metrics,
            listener_metrics,
            tasks,
            listening,
            shutdown,
            args,
            ..
        } = self;
        let addr = listener.local_addr();
        let max_connections = crate::server::listener::connection_cap(
            args.http.max_connections,
            args.admin.admin_max_connections,
            crate::server::open_file_limit(),
        );
        let serving = listener.spawn(
            acceptor,
            args.tls.tls_handshake_timeout,
            tls_metrics,
            listener_metrics,
            crate::server::router(state),
            &args.http,
            max_connections,
            shutdown.clone(),
        );
        listening.release();
        tracing::info!(%addr, "admission listener (HTTPS): POST /mutate, POST /validate");
        if let Err(e) = serving.await {
            tracing::error!(error = %e, "the admission listener failed");
        }
        shutdown.stop();
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a background task failed");
            }
        }
        if tokio::time::timeout(STOP_TIMEOUT, admin_task)
            .await
            .is_err()
        {
            tracing::warn!("admin listener did not stop in time");
        }
        tracing::info!("stopped");
    }
}

/// Run `serve`: log setup, runtime, start, serve until SIGTERM/SIGINT, drain, exit.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    // Flushes the log writer when `run` returns, whatever the outcome.
    let _log_guard = crate::logging::init(&args.log).map_err(StartError::from)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    runtime.block_on(async move {
        let shutdown = Shutdown::new();
        // Installed first, so that a signal during startup is not lost.
        Signals::install()
            .map_err(StartError::Runtime)?
            .forward(shutdown.clone());
        let app = App::start(args, shutdown.clone()).await?;
        if let Some(ca) = app.ephemeral_ca() {
            println!(
                "ephemeral CA certificate: {path}\n  try: curl --cacert {path} https://localhost:{port}/mutate -H 'Content-Type: application/json' -d @examples/admission-review-deployment.json",
                path = ca.display(),
                port = app.local_addr().port()
            );
        }
        tokio::select! {
            () = app.run() => Ok(()),
            () = shutdown.aborted() => Err(anyhow::anyhow!(
                "second shutdown signal: stopped without waiting for in-flight requests"
            )),
        }
    })
}
