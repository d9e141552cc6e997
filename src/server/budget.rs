//! One memory budget for every request body being buffered, across all admission connections and
//! HTTP/2 streams: each body is bounded ([`MAX_BODY_BYTES`]) but without this their sum was not
//! (100 stalled 3 MiB bodies held 364 MiB).
//!
//! Bytes are taken as they arrive (and as the buffer holding them grows), never by the declared
//! `Content-Length`: a client declaring 3 MiB and sending nothing holds nothing. When the budget
//! is full, a body that needs more waits at most [`BUDGET_WAIT`], and meanwhile cuts the oldest
//! body that has been arriving for more than [`EVICT_AFTER`] (the API server sends a body at
//! network speed: one still arriving after a second is a stalled or trickling client). A body
//! that still cannot get room is refused with 503, never left hanging.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::MAX_BODY_BYTES;

/// The default budget: two bodies of the largest size at once, or a hundred usual ones (a
/// review is a few KB to a few tens of KB); bodies wait for room only while others are read.
/// Under a flood of stalled bodies the process then stays well within 64 MiB (docs/).
pub const DEFAULT_BUDGET: usize = 8 * 1024 * 1024;

/// The smallest budget accepted: one body of the largest size, with the frame being copied in.
pub const MIN_BUDGET: usize = 4 * 1024 * 1024;

/// How long a body waits for room before it is refused (well within the API server's default
/// webhook timeout of 10 s and the chart's 5 s).
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// A body still arriving after this long may be cut to make room for others.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// While waiting, how often to look again for a body old enough to cut.
const RECHECK: Duration = Duration::from_millis(100);

/// Parse a size in bytes: a number, optionally followed by `KiB`, `MiB` or `GiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16MiB, 512KiB, 8388608)"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?} (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `--request-body-budget`: a size of at least [`MIN_BUDGET`].
pub fn parse_budget(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if n < MIN_BUDGET {
        return Err(format!(
            "{s:?} is below {} MiB: one body of the largest size ({} MiB) must fit",
            MIN_BUDGET >> 20,
            MAX_BODY_BYTES >> 20
        ));
    }
    Ok(n)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CutLabels {
    reason: &'static str,
}

/// Why a body was cut before it had all arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Not all there within `--request-timeout`.
    Timeout,
    /// Still arriving after [`EVICT_AFTER`] while the budget was needed by another body.
    Evicted,
}

/// `request_body_budget_bytes`, `request_body_bytes_in_use`, `request_body_budget_refused`,
/// `request_bodies_cut{reason}`.
#[derive(Debug, Clone)]
pub struct BudgetMetrics {
    limit: Gauge,
    in_use: Gauge,
    refused: Counter,
    timeout: Counter,
    evicted: Counter,
}

impl BudgetMetrics {
    /// Create every series of the group and register it.
    pub fn register(registry: &mut Registry) -> Self {
        let cut = Family::<CutLabels, Counter>::default();
        // One at a time: the guard get_or_create returns holds the family's lock.
        let timeout = cut.get_or_create(&CutLabels { reason: "timeout" }).clone();
        let evicted = cut.get_or_create(&CutLabels { reason: "evicted" }).clone();
        let m = Self {
            limit: Gauge::default(),
            in_use: Gauge::default(),
            refused: Counter::default(),
            timeout,
            evicted,
        };
        registry.register_with_unit(
            "request_body_budget",
            "Memory allowed for request bodies being buffered, all connections together \
             (--request-body-budget)",
            Unit::Bytes,
            m.limit.clone(),
        );
        registry.register_with_unit(
            "request_body_in_use",
            "Memory held by request bodies being buffered or reviewed",
            Unit::Bytes,
            m.in_use.clone(),
        );
        registry.register(
            "request_body_budget_refused",
            "Requests answered 503 because the request-body budget stayed full",
            m.refused.clone(),
        );
        registry.register(
            "request_bodies_cut",
            "Request bodies cut before they had all arrived (408), by reason: timeout \
             (--request-timeout) or evicted (still arriving after 1 s while the budget was full)",
            cut,
        );
        m
    }

    /// Count a cut body.
    pub fn cut(&self, why: Cut) {
        match why {
            Cut::Timeout => self.timeout.inc(),
            Cut::Evicted => self.evicted.inc(),
        };
    }
}

/// The budget, shared by every request of the admission listener.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limit: usize,
    state: Mutex<State>,
    released: Notify,
    metrics: BudgetMetrics,
}

#[derive(Debug, Default)]
struct State {
    in_use: usize,
    next_id: u64,
    /// Bodies still arriving, by id: ids grow with time, so the first is the oldest.
    arriving: BTreeMap<u64, Arriving>,
}

#[derive(Debug)]
struct Arriving {
    started: Instant,
    cut: Arc<Notify>,
    signalled: bool,
}

/// The budget was full for [`BUDGET_WAIT`].
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// The budget.
    pub limit: usize,
}

/// Why [`Grant::take`] failed.
#[derive(Debug, Clone, Copy)]
pub enum NoRoom {
    /// No room within the wait.
    Refused(Refused),
    /// This body was cut to make room for another.
    Evicted,
}

impl BodyBudget {
    /// A budget of `limit` bytes, reported in `metrics`.
    pub fn new(limit: usize, metrics: BudgetMetrics) -> Self {
        metrics.limit.set(i64::try_from(limit).unwrap_or(i64::MAX));
        Self {
            inner: Arc::new(Inner {
                limit,
                state: Mutex::new(State::default()),
                released: Notify::new(),
                metrics,
            }),
        }
    }

    /// The default budget, its metrics in no registry (benchmarks, tests).
    pub fn unregistered() -> Self {
        Self::new(
            DEFAULT_BUDGET,
            BudgetMetrics::register(&mut Registry::default()),
        )
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The metrics it reports in.
    pub fn metrics(&self) -> &BudgetMetrics {
        &self.inner.metrics
    }

    /// Bytes held now.
    pub fn in_use(&self) -> usize {
        self.inner.lock().in_use
    }

    /// A new body, arriving from now on, holding nothing yet.
    pub fn grant(&self) -> Grant {
        let cut = Arc::new(Notify::new());
        let mut s = self.inner.lock();
        let id = s.next_id;
        s.next_id += 1;
        s.arriving.insert(
            id,
            Arriving {
                started: Instant::now(),
                cut: cut.clone(),
                signalled: false,
            },
        );
        Grant {
            inner: self.inner.clone(),
            id,
            held: 0,
            cut,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements: a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, s: &State) {
        self.metrics
            .in_use
            .set(i64::try_from(s.in_use).unwrap_or(i64::MAX));
    }
}

/// The bytes one body holds; all given back when dropped.
#[derive(Debug)]
pub struct Grant {
    inner: Arc<Inner>,
    id: u64,
    held: usize,
    cut: Arc<Notify>,
}

impl Grant {
    /// Take `n` more bytes, waiting for room until `deadline` (at most [`BUDGET_WAIT`] from
    /// now); while waiting, cut the oldest body arriving for more than [`EVICT_AFTER`].
    pub async fn take(&mut self, n: usize, deadline: Instant) -> Result<(), NoRoom> {
        let deadline = deadline.min(Instant::now() + BUDGET_WAIT);
        let inner = self.inner.clone();
        loop {
            let released = inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if self.try_take(n) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                self.inner.metrics.refused.inc();
                return Err(NoRoom::Refused(Refused {
                    limit: self.inner.limit,
                }));
            }
            tokio::select! {
                () = released => {}
                () = self.cut.notified() => return Err(NoRoom::Evicted),
                () = tokio::time::sleep_until(deadline.min(now + RECHECK)) => {}
            }
        }
    }

    /// Take `n` bytes if they fit; otherwise signal the oldest evictable body.
    fn try_take(&mut self, n: usize) -> bool {
        let mut s = self.inner.lock();
        if s.in_use + n <= self.inner.limit {
            s.in_use += n;
            self.held += n;
            self.inner.publish(&s);
            return true;
        }
        // One cut at a time: the body being cut gives its bytes back at once, and cutting more
        // for the same lack of room would only churn (every waiter looks every RECHECK).
        if s.arriving.values().any(|a| a.signalled) {
            return false;
        }
        let now = Instant::now();
        let me = self.id;
        if let Some(victim) = s.arriving.iter_mut().find(|(id, a)| {
            **id != me && !a.signalled && now.saturating_duration_since(a.started) >= EVICT_AFTER
        }) {
            victim.1.signalled = true;
            victim.1.cut.notify_one();
        }
        false
    }

    /// Give back `n` of the bytes held.
    pub fn give_back(&mut self, n: usize) {
        let n = n.min(self.held);
        if n == 0 {
            return;
        }
        self.held -= n;
        let mut s = self.inner.lock();
        s.in_use -= n;
        self.inner.publish(&s);
        drop(s);
        self.inner.released.notify_waiters();
    }

    /// Completes when this body is cut to make room for another.
    pub async fn evicted(&self) {
        self.cut.notified().await;
    }

    /// The body has all arrived: it can no longer be cut (it keeps its bytes until dropped).
    pub fn arrived(&mut self) {
        self.inner.lock().arriving.remove(&self.id);
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.held
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.arriving.remove(&self.id);
        s.in_use -= self.held;
        self.inner.publish(&s);
        drop(s);
        self.inner.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("16MB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(parse_budget("1MiB").unwrap_err().contains("below 4 MiB"));
        assert_eq!(parse_budget("4MiB"), Ok(MIN_BUDGET));
    }

    #[tokio::test]
    async fn bytes_are_taken_and_given_back() {
        let mut registry = crate::metrics::registry();
        let budget = BodyBudget::new(MIN_BUDGET, BudgetMetrics::register(&mut registry));
        let mut a = budget.grant();
        let far = Instant::now() + Duration::from_secs(10);
        a.take(MIN_BUDGET - 10, far).await.unwrap();
        assert_eq!(budget.in_use(), MIN_BUDGET - 10);
        let mut b = budget.grant();
        b.take(10, far).await.unwrap();
        a.give_back(100);
        assert_eq!(budget.in_use(), MIN_BUDGET - 100);
        budget.metrics().cut(Cut::Evicted);
        let text = crate::metrics::encode(&registry);
        for needle in [
            format!("carto_wi_request_body_budget_bytes {MIN_BUDGET}"),
            format!("carto_wi_request_body_in_use_bytes {}", MIN_BUDGET - 100),
            "carto_wi_request_body_budget_refused_total 0".to_owned(),
            "carto_wi_request_bodies_cut_total{reason=\"timeout\"} 0".to_owned(),
            "carto_wi_request_bodies_cut_total{reason=\"evicted\"} 1".to_owned(),
        ] {
            assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
        }
        drop(a);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_full_budget_refuses_after_the_wait_when_no_body_is_old_enough() {
        let budget = BodyBudget::new(
            MIN_BUDGET,
            BudgetMetrics::register(&mut Registry::default()),
        );
        let mut hog = budget.grant();
        hog.arrived(); // all there: being reviewed, never cut
        hog.take(MIN_BUDGET, Instant::now()).await.unwrap();
        let mut small = budget.grant();
        let start = Instant::now();
        let far = start + Duration::from_secs(10);
        assert!(matches!(
            small.take(1, far).await,
            Err(NoRoom::Refused(Refused { limit: MIN_BUDGET }))
        ));
        assert!(
            start.elapsed() >= BUDGET_WAIT,
            "refused before the wait was over"
        );
        // Room again once the hog is done.
        drop(hog);
        small.take(4096, far).await.unwrap();
    }

    #[tokio::test]
    async fn the_oldest_arriving_body_is_cut_for_a_newer_one() {
        let budget = BodyBudget::new(
            MIN_BUDGET,
            BudgetMetrics::register(&mut Registry::default()),
        );
        let far = Instant::now() + Duration::from_secs(30);
        let mut old = budget.grant();
        old.take(MIN_BUDGET / 2, far).await.unwrap();
        tokio::time::sleep(EVICT_AFTER).await;
        // Young: not cut for another EVICT_AFTER, whatever the load on the machine.
        let mut young = budget.grant();
        young.take(MIN_BUDGET / 2, far).await.unwrap();
        let mut honest = budget.grant();
        let waiting = tokio::spawn(async move { honest.take(4096, far).await.map(|()| honest) });
        // The old body is cut at once; the honest one gets its bytes when it is dropped.
        tokio::time::timeout(Duration::from_secs(30), old.evicted())
            .await
            .expect("the oldest body is cut");
        assert!(
            !budget.inner.lock().arriving[&young.id].signalled,
            "only the oldest body is cut"
        );
        drop(old);
        let honest = waiting.await.unwrap().unwrap();
        assert_eq!(honest.held(), 4096);
    }
}
