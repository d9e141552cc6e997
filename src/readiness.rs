//! Readiness as handles: each component takes one at startup and releases it once it is ready
//! (the pattern of kubert's `initialized`). `/readyz` is ready when no handle is pending and the
//! process is not shutting down.
//!
//! Dropping a handle without releasing it keeps its condition pending: a component that died
//! before it was ready keeps the process unready.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::shutdown::Shutdown;

/// The conditions `/readyz` waits for. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pending: Mutex<Vec<(u64, Cow<'static, str>)>>,
    next: AtomicU64,
    shutdown: Shutdown,
}

/// One pending condition; [`ReadinessHandle::release`] marks it met.
#[derive(Debug)]
#[must_use = "a handle that is never released keeps the process unready"]
pub struct ReadinessHandle {
    inner: Arc<Inner>,
    id: u64,
}

impl Readiness {
    /// No condition yet; not ready once `shutdown` has begun.
    pub fn new(shutdown: Shutdown) -> Self {
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(Vec::new()),
                next: AtomicU64::new(0),
                shutdown,
            }),
        }
    }

    /// A condition to wait for, named for `/readyz` (e.g. "TLS certificate").
    pub fn add(&self, what: impl Into<Cow<'static, str>>) -> ReadinessHandle {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.lock().push((id, what.into()));
        ReadinessHandle {
            inner: self.inner.clone(),
            id,
        }
    }

    /// The names of the conditions not met yet, in the order they were added.
    pub fn pending(&self) -> Vec<String> {
        self.inner
            .lock()
            .iter()
            .map(|(_, w)| w.to_string())
            .collect()
    }

    /// Ready, or the reasons why not.
    pub fn check(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        if self.inner.shutdown.is_draining() {
            why.push("shutting down: draining in-flight requests".to_owned());
        }
        why.extend(
            self.pending()
                .into_iter()
                .map(|w| format!("waiting for {w}")),
        );
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Cow<'static, str>)>> {
        // The list stays consistent whatever panicked while holding it.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReadinessHandle {
    /// The condition is met.
    pub fn release(self) {
        self.inner.lock().retain(|(id, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_handle_is_released_and_until_shutdown() {
        let shutdown = Shutdown::new();
        let r = Readiness::new(shutdown.clone());
        assert_eq!(r.check(), Ok(()));
        let tls = r.add("TLS certificate");
        let config = r.add(String::from("configuration"));
        assert_eq!(
            r.check(),
            Err(vec![
                "waiting for TLS certificate".to_owned(),
                "waiting for configuration".to_owned()
            ])
        );
        config.release();
        assert_eq!(r.pending(), ["TLS certificate"]);
        let dropped = r.add("never released");
        drop(dropped);
        tls.release();
        assert_eq!(r.pending(), ["never released"]);
        let again = Readiness::new(shutdown.clone());
        assert_eq!(again.check(), Ok(()));
        shutdown.request();
        assert_eq!(
            again.check(),
            Err(vec![
                "shutting down: draining in-flight requests".to_owned()
            ])
        );
    }
}
