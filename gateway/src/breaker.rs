//! Circuit breaker on storaged failures and timeouts: closed → open (fast 503) → half-open
//! probes → closed. Time comes from an injected [`Clock`].

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::clock::Clock;
use crate::config::BreakerConfig;

/// The breaker's state, for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

/// A call may go ahead; report its outcome with [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    probe: bool,
}

/// The breaker is open: answer 503 without calling storaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open;

/// The circuit breaker.
pub struct Breaker {
    cfg: BreakerConfig,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Breaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.state())
            .finish()
    }
}

impl Breaker {
    pub fn new(cfg: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            cfg,
            clock,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call may go to storaged now.
    pub fn allow(&self) -> Result<Allowed, Open> {
        let mut state = self.lock();
        if let State::Open { until } = *state {
            if self.clock.now() < until {
                return Err(Open);
            }
            *state = State::HalfOpen { probes: 0 };
        }
        match &mut *state {
            State::HalfOpen { probes } if *probes >= self.cfg.half_open_probes => Err(Open),
            State::HalfOpen { probes } => {
                *probes += 1;
                Ok(Allowed { probe: true })
            }
            _ => Ok(Allowed { probe: false }),
        }
    }

    /// Records the outcome of an allowed call (`failed`: storaged error or timeout).
    pub fn record(&self, allowed: Allowed, failed: bool) {
        let mut state = self.lock();
        let next = match (&*state, failed) {
            (State::HalfOpen { .. }, false) if allowed.probe => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, true) if allowed.probe => self.open(),
            (State::Closed { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) if failures + 1 >= self.cfg.failure_threshold => {
                self.open()
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
            _ => return,
        };
        *state = next;
    }

    fn open(&self) -> State {
        State::Open {
            until: self.clock.now() + self.cfg.open_for,
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if self.clock.now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::Duration;

    fn breaker() -> (Breaker, ManualClock) {
        let clock = ManualClock::default();
        let cfg = BreakerConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(5),
            half_open_probes: 1,
        };
        (Breaker::new(cfg, Arc::new(clock.clone())), clock)
    }

    #[test]
    fn opens_after_failures_then_probes() {
        let (b, clock) = breaker();
        for _ in 0..2 {
            let a = b.allow().unwrap();
            b.record(a, true);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.allow(), Err(Open));
        clock.advance(Duration::from_secs(5));
        let probe = b.allow().unwrap();
        assert_eq!(b.allow(), Err(Open), "only one probe at a time");
        b.record(probe, true);
        assert_eq!(b.state(), BreakerState::Open);
        clock.advance(Duration::from_secs(5));
        let probe = b.allow().unwrap();
        b.record(probe, false);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn success_resets_the_count() {
        let (b, _) = breaker();
        let a = b.allow().unwrap();
        b.record(a, true);
        b.record(a, false);
        b.record(a, true);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
