//! The reconciler's work queue: namespaces to bring to their config, each queued at most once.
//! Fair: work added again while it is being processed waits until that pass is done and then
//! goes to the back, behind everything added meanwhile, so a namespace whose ConfigMap keeps
//! changing delays another one by at most the pass already running.
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
    /// Taken by [`WorkQueue::next`], not yet [`WorkQueue::done`].
    processing: HashSet<Work>,
    /// Added while being processed: queued again when done.
    dirty: HashSet<Work>,
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

    /// Queue `work` unless it is already waiting; work being processed is queued again once
    /// [`done`](Self::done).
    pub fn add(&self, work: Work) {
        let mut inner = self.lock();
        if inner.processing.contains(&work) {
            inner.dirty.insert(work);
        } else if inner.queued.insert(work.clone()) {
            inner.order.push_back(work);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// `work` (taken by [`next`](Self::next)) is finished: if it was added meanwhile, it goes to
    /// the back of the queue now.
    pub fn done(&self, work: &Work) {
        let mut inner = self.lock();
        inner.processing.remove(work);
        if inner.dirty.remove(work) {
            drop(inner);
            self.add(work.clone());
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

    /// Take the next work, waiting for one; call [`done`](Self::done) when it is finished.
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
        inner.processing.insert(w.clone());
        Some(w)
    }

    /// Drop everything waiting (a new leader starts from a full pass anyway).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.order.clear();
        inner.queued.clear();
        inner.processing.clear();
        inner.dirty.clear();
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
        let a = q.next().await;
        assert_eq!(a, Work::Namespace("a".into()));
        q.done(&a);
        q.add(Work::Namespace("a".into()));
        for want in [Work::Namespace("b".into()), Work::Everything] {
            let w = q.next().await;
            assert_eq!(w, want);
            q.done(&w);
        }
        assert_eq!(q.next().await, Work::Namespace("a".into()));
        assert!(q.is_empty());
    }

    /// Namespace `a`'s ConfigMap flips 50 times, 5 flips during each of its passes; `b` changes
    /// once, during one of them. `b` waits only for the pass of `a` already running, and no flip
    /// of `a` ever jumps ahead of it.
    #[tokio::test]
    async fn a_flipping_namespace_delays_another_by_at_most_the_running_pass() {
        let q = WorkQueue::default();
        let (a, b) = (Work::Namespace("a".into()), Work::Namespace("b".into()));
        q.add(a.clone());
        let (mut flips, mut passes_of_a_before_b) = (0, None::<u32>);
        loop {
            let w = q.next().await;
            if w == b {
                q.done(&w);
                break;
            }
            assert_eq!(w, a);
            if let Some(n) = passes_of_a_before_b.as_mut() {
                *n += 1;
            }
            // While `a` is being reconciled its ConfigMap flips again, and again.
            for _ in 0..5 {
                q.add(a.clone());
                flips += 1;
                if flips == 23 {
                    q.add(b.clone());
                    passes_of_a_before_b = Some(0);
                }
            }
            assert!(flips <= 50, "b never ran");
            q.done(&w);
        }
        assert_eq!(
            passes_of_a_before_b,
            Some(0),
            "no pass of a started between b being queued and b running"
        );
        // `a`'s last change is not lost: it runs after b.
        assert_eq!(q.next().await, a);
    }

    #[tokio::test]
    async fn work_added_while_processing_runs_once_more_after_it() {
        let q = WorkQueue::default();
        let a = Work::Namespace("a".into());
        q.add(a.clone());
        let w = q.next().await;
        q.add(a.clone());
        q.add(a.clone());
        assert!(q.is_empty(), "not queued while it runs");
        q.done(&w);
        assert_eq!(q.len(), 1, "queued once after it");
        let w = q.next().await;
        q.done(&w);
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
