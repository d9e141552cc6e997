//! The retry delays of every loop that talks to the API server: backon's exponential backoff,
//! doubling from a first delay up to a cap, without jitter, started over on success.

use std::iter::Peekable;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays that double from `first` up to `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    builder: ExponentialBuilder,
    max: Duration,
    delays: Peekable<ExponentialBackoff>,
    taken: u32,
}

impl Backoff {
    /// `first`, `2 × first`, … up to `max`, then `max` for ever.
    pub(crate) fn doubling(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::new()
            .with_factor(2.0)
            .with_min_delay(first)
            .with_max_delay(max)
            .without_max_times();
        Self {
            builder,
            max,
            delays: builder.build().peekable(),
            taken: 0,
        }
    }

    /// The delay to wait now; the next one is twice as long (up to the cap).
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.taken = self.taken.saturating_add(1);
        self.delays.next().unwrap_or(self.max)
    }

    /// The delay [`Self::next_delay`] would return, without moving on.
    pub(crate) fn current(&mut self) -> Duration {
        self.delays.peek().copied().unwrap_or(self.max)
    }

    /// Move on one delay without waiting it.
    pub(crate) fn grow(&mut self) {
        self.next_delay();
    }

    /// No delay taken since the start or the last [`Self::reset`].
    pub(crate) fn is_fresh(&self) -> bool {
        self.taken == 0
    }

    /// Start over from the first delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.delays = self.builder.build().peekable();
        self.taken = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &[u64]) -> Vec<Duration> {
        s.iter().copied().map(Duration::from_secs).collect()
    }

    fn take(b: &mut Backoff, n: usize) -> Vec<Duration> {
        (0..n).map(|_| b.next_delay()).collect()
    }

    #[test]
    fn doubles_up_to_the_cap_and_stays_there() {
        let mut b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(take(&mut b, 9), secs(&[1, 2, 4, 8, 16, 32, 60, 60, 60]));
        let mut b = Backoff::doubling(Duration::from_secs(2), Duration::from_secs(300));
        assert_eq!(
            take(&mut b, 10),
            secs(&[2, 4, 8, 16, 32, 64, 128, 256, 300, 300])
        );
    }

    #[test]
    fn a_long_run_of_failures_stays_at_the_cap() {
        let mut b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));
        let last = take(&mut b, 10_000).pop();
        assert_eq!(last, Some(Duration::from_secs(60)));
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));
        assert!(b.is_fresh());
        take(&mut b, 4);
        assert!(!b.is_fresh());
        b.reset();
        assert!(b.is_fresh());
        assert_eq!(take(&mut b, 3), secs(&[1, 2, 4]));
    }

    #[test]
    fn current_peeks_and_grow_skips() {
        let mut b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(b.current(), Duration::from_secs(1));
        assert_eq!(
            b.current(),
            Duration::from_secs(1),
            "peeking does not move on"
        );
        assert!(b.is_fresh(), "peeking takes no delay");
        b.grow();
        assert!(!b.is_fresh());
        assert_eq!(b.current(), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }
}
