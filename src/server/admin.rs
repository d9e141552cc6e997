//! The plain-HTTP admin listener: `/livez`, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::listener::{BindError, bind};
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

    /// Serve until `shutdown` stops (after the drain: `/readyz` says so while it lasts).
    pub fn spawn(self, state: AdminState, shutdown: Shutdown) -> JoinHandle<()> {
        let app = router(state);
        tracing::info!(addr = %self.local_addr, "admin listener (plain HTTP): /livez /readyz /metrics");
        tokio::spawn(async move {
            let stop = async move { shutdown.stopped().await };
            if let Err(e) = axum::serve(self.listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "admin listener failed");
            }
        })
    }
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
