//! The injected clock: breakers, rate limits and timings read time through [`Clock`] so tests
//! move a `ManualClock` instead of sleeping. This is the only module that reads the system's
//! clock (clippy's `disallowed-methods` bans `Instant::now` everywhere else).
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

/// A monotonic time source.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The real monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(any(test, feature = "testing"))]
pub use manual::ManualClock;

#[cfg(any(test, feature = "testing"))]
mod manual {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::Clock;

    /// A clock that moves only when told to (tests).
    #[derive(Debug, Clone)]
    pub struct ManualClock(Arc<Mutex<Instant>>);

    impl Default for ManualClock {
        fn default() -> Self {
            Self(Arc::new(Mutex::new(Instant::now())))
        }
    }

    impl ManualClock {
        pub fn advance(&self, by: Duration) {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}
