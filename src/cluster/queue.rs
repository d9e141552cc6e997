//! The reconciler's work queue: namespaces to bring to their config, each queued at most once.
//!
//! Not kube-runtime's `Controller`: the unit of work is a namespace fed by the watches admission
//! already runs (no second watch), and one trigger (the default changed) fans out to every
//! namespace that uses it, which the stable `Controller` cannot express.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// One unit of work.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// Every namespace with a target ServiceAccount or its own ConfigMap (startup, resync).
    Everything,
    /// Every namespace with a target ServiceAccount and no ConfigMap of its own (the default
    /// changed).
    DefaultUsers,
    /// One namespace.
    Namespace(String),
}

#[derive(Debug, Default)]
struct Inner {
    order: VecDeque<Work>,
    queued: HashSet<Work>,
}

/// A de-duplicating FIFO of [`Work`].
#[derive(Debug, Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl WorkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `work` unless it is already waiting.
    pub fn add(&self, work: Work) {
        let mut inner = self.lock();
        if inner.queued.insert(work.clone()) {
            inner.order.push_back(work);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Queue `work` after `delay` (retries after an error).
    pub fn add_after(self: &std::sync::Arc<Self>, work: Work, delay: Duration) {
        let queue = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(q) = queue.upgrade() {
                q.add(work);
            }
        });
    }

    /// Take the next work, waiting for one.
    pub async fn next(&self) -> Work {
        loop {
            let notified = self.notify.notified();
            if let Some(w) = self.try_next() {
                return w;
            }
            notified.await;
        }
    }

    fn try_next(&self) -> Option<Work> {
        let mut inner = self.lock();
        let w = inner.order.pop_front()?;
        inner.queued.remove(&w);
        Some(w)
    }

    /// Drop everything waiting (a new leader starts from a full pass anyway).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.order.clear();
        inner.queued.clear();
    }

    /// How many works are waiting.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Is nothing waiting?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_keeps_order() {
        let q = WorkQueue::default();
        q.add(Work::Namespace("a".into()));
        q.add(Work::Namespace("b".into()));
        q.add(Work::Namespace("a".into()));
        q.add(Work::Everything);
        assert_eq!(q.len(), 3);
        assert_eq!(q.next().await, Work::Namespace("a".into()));
        q.add(Work::Namespace("a".into()));
        assert_eq!(q.next().await, Work::Namespace("b".into()));
        assert_eq!(q.next().await, Work::Everything);
        assert_eq!(q.next().await, Work::Namespace("a".into()));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn next_waits_for_work() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add(Work::DefaultUsers);
        assert_eq!(waiter.await.unwrap(), Work::DefaultUsers);
    }
}
