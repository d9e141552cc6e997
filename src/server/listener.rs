//! The HTTPS admission listener, in two steps: [`AdmissionListener::bind`] at startup (a port in
//! use is a startup error), then [`AdmissionListener::spawn`]: accept TLS connections and serve
//! them until shutdown begins, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::duration::parse_duration;
use crate::pki::{HandshakeFailure, TlsMetrics};
use crate::shutdown::Shutdown;

/// HTTP behaviour of the admission listener.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "HTTP")]
pub struct HttpArgs {
    /// Time allowed for a client to send a request's headers (HTTP/1.1).
    #[arg(long, env = "CARTO_WI_HEADER_READ_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time allowed for a request's body to arrive; a slower request gets 408.
    #[arg(long, env = "CARTO_WI_REQUEST_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// On SIGTERM/SIGINT, keep accepting connections this long after readiness turns false, so
    /// endpoints are updated before the listener closes.
    #[arg(long, env = "CARTO_WI_SHUTDOWN_DELAY", default_value = "0s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before the process exits.
    #[arg(long, env = "CARTO_WI_SHUTDOWN_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {addr}: cannot listen: {error}")]
pub struct BindError {
    /// The flag naming the address.
    pub flag: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub error: std::io::Error,
}

/// Bind `addr`, naming `flag` on error.
/// Returns the listener and the address it got (the actual port when `addr` asked for any).
pub async fn bind(
    flag: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), BindError> {
    let failed = |error| BindError { flag, addr, error };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local_addr = listener.local_addr().map_err(failed)?;
    Ok((listener, local_addr))
}

/// The admission listener, bound, not accepting yet.
#[derive(Debug)]
pub struct AdmissionListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

/// How each connection is served.
#[derive(Clone)]
struct Connections {
    acceptor: TlsAcceptor,
    builder: Arc<auto::Builder<TokioExecutor>>,
    router: Router,
    handshake_timeout: Duration,
    metrics: TlsMetrics,
}

impl AdmissionListener {
    /// Bind `--listen`.
    pub async fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let (listener, local_addr) = bind("--listen", addr).await?;
        Ok(Self {
            listener,
            local_addr,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve `router` over TLS until `shutdown` begins; then keep accepting for
    /// `--shutdown-delay`, close the listener and let in-flight requests finish within
    /// `--shutdown-timeout`. The task ends when the drain is over.
    pub fn spawn(
        self,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
        metrics: TlsMetrics,
        router: Router,
        http: &HttpArgs,
        shutdown: Shutdown,
    ) -> JoinHandle<()> {
        let conns = Connections {
            acceptor,
            builder: Arc::new(http_builder(http)),
            router,
            handshake_timeout,
            metrics,
        };
        let (delay, timeout) = (http.shutdown_delay, http.shutdown_timeout);
        tokio::spawn(async move {
            let stop_accepting = async {
                shutdown.drain_started().await;
                tracing::info!("shutting down: readiness is false; draining");
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            };
            let graceful = accept_loop(self.listener, conns, stop_accepting).await;
            drain(graceful, timeout).await;
        })
    }
}

fn http_builder(http: &HttpArgs) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accept until `stop` completes; the listener is closed on return.
async fn accept_loop(
    listener: TcpListener,
    conns: Connections,
    stop: impl std::future::Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let span = tracing::info_span!("connection", %peer);
                tokio::spawn(
                    serve_connection(conns.clone(), tcp, peer, graceful.watcher()).instrument(span),
                );
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    graceful
}

async fn serve_connection(
    conns: Connections,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let handshake = conns.acceptor.accept(tcp);
    let tls = match tokio::time::timeout(conns.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            conns.metrics.handshake_failure(HandshakeFailure::Error);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            conns.metrics.handshake_failure(HandshakeFailure::Timeout);
            tracing::debug!(%peer, "TLS handshake timed out (--tls-handshake-timeout)");
            return;
        }
    };
    let service = TowerToHyperService::new(conns.router);
    let conn = conns.builder.serve_connection(TokioIo::new(tls), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Let the open connections finish, within `timeout`.
async fn drain(graceful: GracefulShutdown, timeout: Duration) {
    let open = graceful.count();
    match tokio::time::timeout(timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!(connections = open, "drained"),
        Err(_) => tracing::warn!(
            ?timeout,
            "connections still open after --shutdown-timeout; closing them"
        ),
    }
}
