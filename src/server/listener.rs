//! The HTTPS admission listener, in two steps: [`AdmissionListener::bind`] at startup (a port in
//! use is a startup error), then [`AdmissionListener::spawn`]: accept TLS connections and serve
//! them until shutdown begins, then drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use clap::Args;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use super::budget::parse_budget;
use super::conn::{Accepting, Drain, Http};
use super::metrics::ListenerMetrics;
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

    /// Close a connection after this long without a request (HTTP/1.1 keep-alive and HTTP/2).
    /// An HTTP/1.1 connection waiting for its next request is also closed after
    /// --header-read-timeout, whichever comes first.
    #[arg(long, env = "CARTO_WI_IDLE_TIMEOUT", default_value = "90s", value_name = "DURATION", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Most admission connections open at once; further ones wait in the listen backlog
    /// [default: 1024, lowered to fit the open-file limit].
    #[arg(long, env = "CARTO_WI_MAX_CONNECTIONS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: Option<u32>,

    /// Time allowed for a request's body to arrive; a slower request gets 408 and its
    /// connection is closed (HTTP/1.1; HTTP/2 resets the stream).
    #[arg(long, env = "CARTO_WI_REQUEST_TIMEOUT", default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Memory all request bodies being read or reviewed may hold together (e.g. 16MiB). A body
    /// that finds it full waits up to 2 s, cutting the oldest body still arriving after 1 s
    /// (408), then gets 503. At least 4MiB.
    #[arg(long, env = "CARTO_WI_REQUEST_BODY_BUDGET", default_value = "8MiB", value_name = "SIZE", value_parser = parse_budget)]
    pub request_body_budget: usize,

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
    handshake_timeout: Duration,
    tls_metrics: TlsMetrics,
    /// By the protocol the client chose with ALPN, so that a client that then sends nothing is
    /// held by HTTP/1.1's header timeout rather than waited for (`auto`: no ALPN).
    h1: Http,
    h2: Http,
    auto: Http,
}

/// File descriptors kept for everything but admission connections (log, config and certificate
/// files, the cluster client, the runtime), besides the admin listener's cap.
const RESERVED_FDS: u64 = 64;

/// The default cap on admission connections.
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;

/// The cap on admission connections: `--max-connections`, or the default lowered to fit the
/// open-file limit `nofile` along with the admin listener's `admin_cap`. An explicit value over
/// that budget is kept, with a warning.
pub fn connection_cap(requested: Option<u32>, admin_cap: u32, nofile: Option<u64>) -> usize {
    let budget = nofile.map(|n| n.saturating_sub(RESERVED_FDS + u64::from(admin_cap)).max(1));
    let cap = match (requested, budget) {
        (Some(n), Some(b)) if u64::from(n) > b => {
            tracing::warn!(
                max_connections = n,
                open_file_limit = nofile,
                "--max-connections is over what the open-file limit leaves room for: a flood can \
                 exhaust file descriptors (raise the limit or lower --max-connections)"
            );
            u64::from(n)
        }
        (Some(n), _) => u64::from(n),
        (None, Some(b)) if b < DEFAULT_MAX_CONNECTIONS => {
            tracing::info!(
                max_connections = b,
                open_file_limit = nofile,
                "--max-connections lowered to fit the open-file limit"
            );
            b
        }
        (None, _) => DEFAULT_MAX_CONNECTIONS,
    };
    usize::try_from(cap).unwrap_or(usize::MAX)
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

    /// Serve `router` over TLS, at most `max_connections` at once, until `shutdown` begins; then
    /// keep accepting for `--shutdown-delay`, close the listener and let in-flight requests
    /// finish within `--shutdown-timeout`. The task ends when the drain is over.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        self,
        acceptor: TlsAcceptor,
        handshake_timeout: Duration,
        tls_metrics: TlsMetrics,
        metrics: ListenerMetrics,
        router: Router,
        http: &HttpArgs,
        max_connections: usize,
        shutdown: Shutdown,
    ) -> JoinHandle<()> {
        let serving = |builder| Http {
            builder: Arc::new(builder),
            router: router.clone(),
            idle_timeout: http.idle_timeout,
            metrics: metrics.clone(),
        };
        let builder = http_builder(http);
        let conns = Connections {
            acceptor,
            handshake_timeout,
            tls_metrics,
            h1: serving(builder.clone().http1_only()),
            h2: serving(builder.clone().http2_only()),
            auto: serving(builder),
        };
        let (delay, timeout) = (http.shutdown_delay, http.shutdown_timeout);
        let accepting = Accepting::new(self.listener, max_connections, metrics);
        tokio::spawn(async move {
            let stop_accepting = async {
                shutdown.drain_started().await;
                tracing::info!("shutting down: readiness is false; draining");
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            };
            let drain = Drain::new();
            accepting
                .run(stop_accepting, |tcp, peer, slot| {
                    let span = tracing::info_span!("connection", %peer);
                    let (conns, draining) = (conns.clone(), drain.watcher());
                    tokio::spawn(
                        async move {
                            serve_connection(&conns, tcp, peer, draining).await;
                            drop(slot);
                        }
                        .instrument(span),
                    );
                })
                .await;
            match drain.run(timeout).await {
                Ok(open) => tracing::info!(connections = open, "drained"),
                Err(open) => tracing::warn!(
                    ?timeout,
                    connections = open,
                    "connections still open after --shutdown-timeout; closing them"
                ),
            }
        })
    }
}

/// The largest read buffer of an HTTP/1.1 connection (hyper's default is ~400 KiB): what a
/// connection holds besides the budgeted body, so kept small; request headers must fit in it.
const H1_MAX_BUFFER: usize = 16 * 1024;

/// HTTP/2 flow-control windows of the admission listener (RFC 9113's default).
const H2_WINDOW: u32 = 65_535;

fn http_builder(http: &HttpArgs) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .max_buf_size(H1_MAX_BUFFER)
        .keep_alive(true);
    // What a stalled HTTP/2 connection can make this process buffer before its handler reads
    // (and budgets) the data: the flow-control windows, at the protocol's default rather than
    // hyper's 1 MiB. A 3 MiB body then takes ~48 window updates, a few ms in a cluster.
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_connection_window_size(H2_WINDOW)
        .initial_stream_window_size(H2_WINDOW);
    builder
}

async fn serve_connection(
    conns: &Connections,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    let handshake = conns.acceptor.accept(tcp);
    let tls = match tokio::time::timeout(conns.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            conns.tls_metrics.handshake_failure(HandshakeFailure::Error);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            conns
                .tls_metrics
                .handshake_failure(HandshakeFailure::Timeout);
            tracing::debug!(%peer, "TLS handshake timed out (--tls-handshake-timeout)");
            return;
        }
    };
    let http = match tls.get_ref().1.alpn_protocol() {
        Some(b"h2") => &conns.h2,
        Some(b"http/1.1") => &conns.h1,
        _ => &conns.auto,
    };
    http.serve(tls, peer, draining).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_fits_the_open_file_limit() {
        assert_eq!(connection_cap(None, 32, None), 1024);
        assert_eq!(connection_cap(None, 32, Some(1_048_576)), 1024);
        assert_eq!(connection_cap(None, 32, Some(1024)), 1024 - 64 - 32);
        assert_eq!(connection_cap(None, 32, Some(50)), 1);
        // An explicit value is kept, whatever the limit.
        assert_eq!(connection_cap(Some(5000), 32, Some(1024)), 5000);
        assert_eq!(connection_cap(Some(10), 32, Some(1024)), 10);
    }
}
