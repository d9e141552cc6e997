//! Shutdown signals: SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C).

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

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

    /// Count signals as they arrive, on a background task: the receiver sees 1 after the first,
    /// 2 after the second, and so on.
    pub fn counter(mut self) -> watch::Receiver<u32> {
        let (tx, rx) = watch::channel(0u32);
        tokio::spawn(async move {
            loop {
                let name = self.recv().await;
                let n = *tx.borrow() + 1;
                if n == 1 {
                    tracing::info!(signal = name, "shutdown requested");
                } else {
                    tracing::warn!(signal = name, "second shutdown signal: exiting now");
                }
                if tx.send(n).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

/// Wait until the counter reaches `n`.
pub async fn reached(mut rx: watch::Receiver<u32>, n: u32) {
    // An error means the counting task is gone; treat it as reached rather than hang.
    let _ = rx.wait_for(|c| *c >= n).await;
}
