//! One shutdown signal shared by every component: the first SIGTERM/SIGINT starts the drain, a
//! second one aborts it.
//!
//! Components wait on the phase that concerns them: the admission listener (and whatever writes to
//! the cluster) stops at [`Shutdown::drain_started`]; what must keep answering while requests
//! drain (the admin listener, the config and certificate sources) stops at [`Shutdown::stopped`],
//! which the process signals once the drain is over.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    Draining,
    Stopped,
    Aborted,
}

/// A cloneable handle on the process's shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// Running: nothing requested yet.
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Running)),
        }
    }

    /// What a SIGTERM does: the first request starts the drain, the next one aborts it. Returns
    /// true when this request aborted.
    pub fn request(&self) -> bool {
        let mut aborted = false;
        self.phase.send_modify(|p| {
            *p = match *p {
                Phase::Running => Phase::Draining,
                _ => {
                    aborted = true;
                    Phase::Aborted
                }
            };
        });
        aborted
    }

    /// The drain is over: stop what kept running during it.
    pub fn stop(&self) {
        self.phase.send_if_modified(|p| {
            let change = *p < Phase::Stopped;
            if change {
                *p = Phase::Stopped;
            }
            change
        });
    }

    /// Has shutdown begun?
    pub fn is_draining(&self) -> bool {
        *self.phase.borrow() >= Phase::Draining
    }

    /// Completes once shutdown has begun (at once if it has).
    pub async fn drain_started(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Completes once the drain is over, or aborted.
    pub async fn stopped(&self) {
        self.reached(Phase::Stopped).await;
    }

    /// Completes when a second request aborts the drain.
    pub async fn aborted(&self) {
        self.reached(Phase::Aborted).await;
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// The process's SIGTERM and SIGINT handlers, installed once at startup so that an early signal
/// is not lost.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Install the handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Wait for the next signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }

    /// Turn every signal into a [`Shutdown::request`], on a background task.
    pub fn forward(mut self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let name = self.recv().await;
                if shutdown.request() {
                    tracing::warn!(signal = name, "second shutdown signal: exiting now");
                } else {
                    tracing::info!(signal = name, "shutdown requested");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_in_order() {
        let s = Shutdown::new();
        assert!(!s.is_draining());
        assert!(!s.request(), "the first request drains");
        assert!(s.is_draining());
        s.drain_started().await;
        s.stop();
        s.stopped().await;
        assert!(s.request(), "the second request aborts");
        s.aborted().await;
        s.stop();
        s.aborted().await;
    }
}
