//! The plain-HTTP admin listener: `/livez`, `/readyz` and `/metrics`, served by a thread of its
//! own, so that they answer while the admission workers are busy or flooded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::conn::{Accepting, Drain, Http};
use super::listener::{BindError, bind};
use super::metrics::ListenerMetrics;
use crate::duration::parse_duration;
use crate::readiness::Readiness;
use crate::shutdown::Shutdown;

/// The plain-HTTP admin listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin")]
pub struct AdminArgs {
    /// Address of the plain-HTTP admin listener: /livez, /readyz, /metrics.
    #[arg(
        long,
        env = "CARTO_WI_ADMIN_LISTEN",
        default_value = "0.0.0.0:8080",
        value_name = "ADDR"
    )]
    pub admin_listen: SocketAddr,

    /// Most admin connections open at once; further ones wait in the listen backlog.
    #[arg(long, env = "CARTO_WI_ADMIN_MAX_CONNECTIONS", default_value = "32", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,

    /// Time allowed for an admin client to send a request's headers; an HTTP/1.1 connection
    /// waiting for its next request is closed after it too.
    #[arg(long, env = "CARTO_WI_ADMIN_HEADER_READ_TIMEOUT", default_value = "5s", value_name = "DURATION", value_parser = parse_duration)]
    pub admin_header_read_timeout: Duration,

    /// Close an admin connection after this long without a request.
    #[arg(long, env = "CARTO_WI_ADMIN_IDLE_TIMEOUT", default_value = "90s", value_name = "DURATION", value_parser = parse_duration)]
    pub admin_idle_timeout: Duration,
}

/// What the admin routes read.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The readiness conditions.
    pub readiness: Readiness,
    /// Every metric, frozen after startup.
    pub registry: Arc<Registry>,
}

/// Content type of the OpenMetrics text format that `prometheus-client` writes.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The admin listener, bound, not serving yet (bound at startup so a port in use is a startup
/// error).
#[derive(Debug)]
pub struct AdminListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl AdminListener {
    /// Bind `--admin-listen`.
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let (listener, local_addr) = bind("--admin-listen", addr).await?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve on a thread of its own (one-thread runtime) until `shutdown` stops (after the
    /// drain: `/readyz` says so while it lasts), or the runtime calling this is dropped. The
    /// returned task ends when that thread is done.
    pub fn spawn(
        self,
        state: AdminState,
        args: &AdminArgs,
        metrics: ListenerMetrics,
        shutdown: Shutdown,
    ) -> std::io::Result<JoinHandle<()>> {
        tracing::info!(addr = %self.local_addr, "admin listener (plain HTTP): /livez /readyz /metrics");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("carto-wi-admin")
            .build()?;
        let listener = self.listener.into_std()?;
        let http = Http {
            // HTTP/1.1 only (probes, scrapers): the header timeout then runs from the first byte.
            builder: Arc::new(http_builder(args).http1_only()),
            router: router(state),
            idle_timeout: args.admin_idle_timeout,
            metrics: metrics.clone(),
        };
        let max = args.admin_max_connections as usize;
        // Dropped with the calling runtime's task below: the thread then stops too.
        let (owner, owner_gone) = oneshot::channel::<()>();
        let (done, finished) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("carto-wi-admin".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stop = async move {
                        tokio::select! {
                            () = shutdown.stopped() => {}
                            _ = owner_gone => {}
                        }
                    };
                    match TcpListener::from_std(listener) {
                        Ok(l) => serve(Accepting::new(l, max, metrics), http, stop).await,
                        Err(e) => tracing::error!(error = %e, "admin listener failed"),
                    }
                });
                let _ = done.send(());
            })?;
        Ok(tokio::spawn(async move {
            let _owner = owner;
            let _ = finished.await;
        }))
    }
}

fn http_builder(args: &AdminArgs) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(args.admin_header_read_timeout)
        .keep_alive(true);
    builder
}

/// Accept and serve until `stop`; then let open connections finish briefly.
async fn serve(accepting: Accepting, http: Http, stop: impl std::future::Future<Output = ()>) {
    let drain = Drain::new();
    accepting
        .run(stop, |tcp, peer, slot| {
            let (http, draining) = (http.clone(), drain.watcher());
            tokio::spawn(async move {
                http.serve(tcp, peer, draining).await;
                drop(slot);
            });
        })
        .await;
    let _ = drain.run(STOP_TIMEOUT / 2).await;
}

/// How long the admin listener may take to stop once asked.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The router of the admin listener.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/healthz", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

/// Alive as long as the process answers.
async fn livez() -> Response {
    text(StatusCode::OK, "ok\n".into())
}

/// Ready once every readiness handle is released; not while draining.
async fn readyz(State(state): State<AdminState>) -> Response {
    match state.readiness.check() {
        Ok(()) => text(StatusCode::OK, "ready\n".into()),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        ),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        crate::metrics::encode(&state.registry),
    )
        .into_response()
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "the admin listener serves /livez, /readyz and /metrics\n".into(),
    )
}
