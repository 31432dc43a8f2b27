//! The injected clock: checkpoint timing, the durations the engine reports and its wall-clock
//! stamps read time through [`Clock`], so tests move a [`ManualClock`] instead of sleeping.
//! The daemon uses the same clock for its call deadlines. The only reads of the real clock in
//! storaged are in [`SystemClock`].

use std::fmt;
use std::time::{Duration, Instant};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Monotonic time, for intervals and deadlines.
    fn now(&self) -> Instant;
    /// Wall-clock time in milliseconds since the Unix epoch, for stamps an operator reads.
    fn unix_ms(&self) -> u64;

    /// How long since `earlier` (zero if the clock reads earlier than that).
    fn since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place that reads the monotonic clock
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[allow(clippy::disallowed_methods)] // the one place that reads the wall clock
    fn unix_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(any(test, feature = "testing"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "testing"))]
mod manual {
    use super::Clock;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    /// A clock that moves only when told to (tests). Clones share the time.
    #[derive(Debug, Clone)]
    pub struct ManualClock(Arc<Mutex<(Instant, u64)>>);

    impl Default for ManualClock {
        #[allow(clippy::disallowed_methods)] // a starting point; only `advance` moves it
        fn default() -> Self {
            Self(Arc::new(Mutex::new((Instant::now(), 1_700_000_000_000))))
        }
    }

    impl ManualClock {
        /// Moves both the monotonic and the wall clock forward by `by`.
        pub fn advance(&self, by: Duration) {
            let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
            t.0 += by;
            t.1 =
                t.1.saturating_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).0
        }

        fn unix_ms(&self) -> u64 {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::default();
        let (t0, w0) = (clock.now(), clock.unix_ms());
        assert_eq!(clock.now(), t0);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.since(t0), Duration::from_millis(1500));
        assert_eq!(clock.unix_ms(), w0 + 1500);
        assert_eq!(clock.clone().now(), clock.now(), "clones share the time");
    }
}
