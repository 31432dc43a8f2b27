//! The injected clock: breakers, rate limits, replay windows, token expiry and timings read
//! time through [`Clock`] so tests move a `ManualClock` instead of sleeping. This is the only
//! module that reads the system's clock (clippy's `disallowed-methods` bans `Instant::now` and
//! `SystemTime::now` everywhere else).
#![allow(clippy::disallowed_methods)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A time source: monotonic for durations, wall-clock for signed times and days.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;

    /// Seconds since the Unix epoch (UTC).
    fn unix_secs(&self) -> i64;
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_secs(&self) -> i64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
    }
}

#[cfg(any(test, feature = "testing"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "testing"))]
mod manual {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::Clock;

    /// Where a manual clock's wall time starts: 2026-01-01T00:00:00Z.
    const START_UNIX: i64 = 1_767_225_600;

    /// A clock that moves only when told to (tests); both readings move together.
    #[derive(Debug, Clone)]
    pub struct ManualClock(Arc<Mutex<(Instant, Duration)>>);

    impl Default for ManualClock {
        fn default() -> Self {
            Self(Arc::new(Mutex::new((Instant::now(), Duration::ZERO))))
        }
    }

    impl ManualClock {
        pub fn advance(&self, by: Duration) {
            let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
            t.0 += by;
            t.1 += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).0
        }

        fn unix_secs(&self) -> i64 {
            let elapsed = self.0.lock().unwrap_or_else(|p| p.into_inner()).1;
            START_UNIX + elapsed.as_secs() as i64
        }
    }
}
