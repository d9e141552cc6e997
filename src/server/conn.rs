//! What both listeners share: a cap on open connections (beyond it, new ones wait in the kernel's
//! backlog), accept errors logged at most once a second, an idle timeout per connection, and the
//! drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::metrics::ListenerMetrics;

/// Pause after a failed accept, so that running out of file descriptors does not spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a connection closed for idleness may take to say goodbye (an HTTP/2 client that
/// never acknowledges the GOAWAY) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One open connection's place under the cap; freed when the connection ends.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: ListenerMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.closed();
    }
}

/// Accepts connections, at most `max` open at once.
pub(crate) struct Accepting {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    errors: AcceptErrors,
    metrics: ListenerMetrics,
}

impl Accepting {
    pub(crate) fn new(listener: TcpListener, max: usize, metrics: ListenerMetrics) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
            errors: AcceptErrors::new(metrics.listener()),
            metrics,
        }
    }

    /// Hand each connection to `serve` until `stop` completes; the listener is closed on return.
    pub(crate) async fn run(
        mut self,
        stop: impl Future<Output = ()>,
        mut serve: impl FnMut(TcpStream, SocketAddr, Slot),
    ) {
        tokio::pin!(stop);
        while let Some((tcp, peer, slot)) = self.next(stop.as_mut()).await {
            serve(tcp, peer, slot);
        }
    }

    /// The next connection, once a slot is free; `None` once `stop` completes.
    async fn next(
        &mut self,
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Option<(TcpStream, SocketAddr, Slot)> {
        loop {
            // Wait for a free slot before accepting: beyond the cap, connections stay in the
            // backlog and cost no file descriptor.
            let permit = tokio::select! {
                biased;
                () = stop.as_mut() => return None,
                p = self.slots.clone().acquire_owned() => p.ok()?,
            };
            let accepted = tokio::select! {
                biased;
                () = stop.as_mut() => return None,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    self.metrics.opened();
                    let slot = Slot {
                        _permit: permit,
                        metrics: self.metrics.clone(),
                    };
                    return Some((tcp, peer, slot));
                }
                Err(e) => {
                    self.metrics.accept_error();
                    self.errors.record(&e, std::time::Instant::now());
                    drop(permit);
                    tokio::select! {
                        biased;
                        () = stop.as_mut() => return None,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }
}

/// Accept errors (EMFILE and the like) logged at most once a second, with the number left
/// unlogged since the previous line.
#[derive(Debug)]
pub(crate) struct AcceptErrors {
    listener: &'static str,
    last_logged: Option<std::time::Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    pub(crate) fn new(listener: &'static str) -> Self {
        Self {
            listener,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Log `e` unless a line was written less than a second before `now`.
    pub(crate) fn record(&mut self, e: &std::io::Error, now: std::time::Instant) {
        if let Some(suppressed) = self.should_log(now) {
            tracing::warn!(
                listener = self.listener,
                error = %e,
                suppressed,
                "cannot accept connections (out of file descriptors?); retrying"
            );
        }
    }

    /// `Some(errors left unlogged since the last line)` when a line is due.
    fn should_log(&mut self, now: std::time::Instant) -> Option<u64> {
        let recent = self
            .last_logged
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1));
        if recent {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Tells open connections that the listener is draining; the drain is over when they are all gone.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: watch::Sender<bool>,
}

impl Drain {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::Sender::new(false),
        }
    }

    /// Held by one connection for its whole life.
    pub(crate) fn watcher(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Ask every connection to finish; `Ok(open)` once they all have, within `timeout`.
    pub(crate) async fn run(self, timeout: Duration) -> Result<usize, usize> {
        let open = self.tx.receiver_count();
        self.tx.send_replace(true);
        match tokio::time::timeout(timeout, self.tx.closed()).await {
            Ok(()) => Ok(open),
            Err(_) => Err(self.tx.receiver_count()),
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `origin` at the end of the last request (0: none yet).
    last_ms: AtomicU64,
}

/// One request in flight; its end counts as the connection's last activity.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Completes once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let now = Instant::now();
            let deadline = if self.in_flight.load(Ordering::SeqCst) > 0 {
                now + timeout
            } else {
                self.origin + Duration::from_millis(self.last_ms.load(Ordering::SeqCst)) + timeout
            };
            if deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// How one listener serves HTTP on its connections.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) router: Router,
    pub(crate) idle_timeout: Duration,
    pub(crate) metrics: ListenerMetrics,
}

/// Why a connection is being closed from this side.
enum Close {
    Idle,
    Drain,
}

impl Http {
    /// Serve HTTP/1.1 or HTTP/2 on `io` until the client leaves, the connection has been idle for
    /// the idle timeout, or the listener drains. Client-caused errors are logged at debug only
    /// (they are counted).
    pub(crate) async fn serve<I>(
        &self,
        io: I,
        peer: SocketAddr,
        mut draining: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let service = {
            let (router, activity) = (self.router.clone(), activity.clone());
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let busy = activity.begin();
                let call = router.clone().oneshot(req);
                async move {
                    let response = call.await;
                    drop(busy);
                    response
                }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let why = tokio::select! {
            r = conn.as_mut() => return self.ended(peer, r),
            () = activity.idle_for(self.idle_timeout) => Close::Idle,
            _ = draining.wait_for(|d| *d) => Close::Drain,
        };
        conn.as_mut().graceful_shutdown();
        match why {
            Close::Idle => {
                self.metrics.idle_closed();
                if let Ok(r) = tokio::time::timeout(IDLE_CLOSE_GRACE, conn).await {
                    self.ended(peer, r);
                }
            }
            Close::Drain => self.ended(peer, conn.await),
        }
    }

    fn ended(&self, peer: SocketAddr, r: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
        if let Err(e) = r {
            // Malformed requests, header timeouts, HTTP/2 resets and GOAWAYs: the client's doing,
            // so counted rather than logged above debug.
            self.metrics.connection_error();
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// The soft limit on open files of this process (Linux), `None` when unknown or unlimited.
pub fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_logged_at_most_once_a_second_with_a_count() {
        let mut errors = AcceptErrors::new("admission");
        let t0 = std::time::Instant::now();
        assert_eq!(errors.should_log(t0), Some(0));
        for i in 1..=19 {
            assert_eq!(errors.should_log(t0 + Duration::from_millis(50 * i)), None);
        }
        assert_eq!(errors.should_log(t0 + Duration::from_secs(1)), Some(19));
        assert_eq!(errors.should_log(t0 + Duration::from_millis(1500)), None);
        assert_eq!(errors.should_log(t0 + Duration::from_secs(3)), Some(1));
    }

    #[test]
    fn the_open_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_file_limit().is_some_and(|n| n > 0));
        }
    }
}
