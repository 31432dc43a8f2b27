//! The in-process per-principal GCRA: one governor keyed limiter per plan (governor gives a
//! keyed limiter one quota for every key), keyed by principal. A plan whose numbers changed
//! in a policy reload gets a fresh limiter on its next request, so the change takes effect at
//! once (its principals start with a full bucket). Time comes from the injected
//! [`LimiterClock`], so tests drive governor's `FakeRelativeClock`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use governor::clock::{Clock, FakeRelativeClock, MonotonicClock, SystemClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::policy::model::Plan;

/// The limiters' time source: governor's clock for the in-process GCRA, and microseconds on
/// the time line that every gateway sharing a Redis agrees on (Unix time in production) for
/// the shared one.
pub trait LimiterClock: Clock + Clone + Send + Sync + 'static {
    fn shared_micros(&self) -> i64;
}

/// Production: monotonic time for the in-process GCRA (a step of the wall clock can neither
/// drain nor refill a budget), Unix time for the shared one. governor reads the system's
/// clocks, so this crate never does.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealClock;

impl Clock for RealClock {
    type Instant = <MonotonicClock as Clock>::Instant;

    fn now(&self) -> Self::Instant {
        MonotonicClock.now()
    }
}

impl LimiterClock for RealClock {
    fn shared_micros(&self) -> i64 {
        let since = std::time::SystemTime::duration_since(&SystemClock.now(), UNIX_EPOCH);
        since.map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }
}

/// Tests: a clock that moves only when told to; its clones share one time.
impl LimiterClock for FakeRelativeClock {
    fn shared_micros(&self) -> i64 {
        let since_start: Duration = self.now().into();
        i64::try_from(since_start.as_micros()).unwrap_or(i64::MAX)
    }
}

/// What the GCRA said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateOutcome {
    /// Let through; `remaining` more could pass now; the bucket is full again after `refill`.
    Allowed {
        remaining: u32,
        refill: Duration,
    },
    Limited {
        retry_after: Duration,
    },
}

/// A plan's rate and burst, both non-zero (policy validation guarantees it; a plan that slips
/// through anyway is refused by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) per_sec: NonZeroU32,
    pub(crate) burst: NonZeroU32,
}

impl Rate {
    pub(crate) fn of(plan: &Plan) -> Option<Self> {
        Some(Self {
            per_sec: NonZeroU32::new(plan.rate_per_sec)?,
            burst: NonZeroU32::new(plan.burst)?,
        })
    }

    /// The time one request's worth of budget takes to come back.
    pub(crate) fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_sec.get()
    }
}

type Keyed<C> = RateLimiter<String, HashMapStateStore<String>, C, StateInformationMiddleware>;

struct PlanLimiter<C: LimiterClock> {
    rate: Rate,
    limiter: Arc<Keyed<C>>,
}

pub(crate) struct LocalLimiter<C: LimiterClock> {
    clock: C,
    /// By plan name.
    plans: RwLock<HashMap<String, PlanLimiter<C>>>,
}

impl<C: LimiterClock> LocalLimiter<C> {
    pub(crate) fn new(clock: C) -> Self {
        Self {
            clock,
            plans: RwLock::new(HashMap::new()),
        }
    }

    /// One request of `principal` under `plan`.
    pub(crate) fn check(&self, plan_name: &str, rate: Rate, principal: &str) -> RateOutcome {
        let limiter = self.limiter(plan_name, rate);
        match limiter.check_key(&principal.to_owned()) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let used = rate.burst.get().saturating_sub(remaining);
                RateOutcome::Allowed {
                    remaining,
                    refill: rate.interval() * used,
                }
            }
            Err(not_until) => RateOutcome::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// Drops the state of principals idle long enough that their bucket is full again (memory
    /// stays bounded by the principals active within about one refill time).
    pub(crate) fn housekeeping(&self) {
        for plan in self.read().values() {
            plan.limiter.retain_recent();
        }
    }

    fn limiter(&self, plan_name: &str, rate: Rate) -> Arc<Keyed<C>> {
        if let Some(plan) = self.read().get(plan_name).filter(|p| p.rate == rate) {
            return Arc::clone(&plan.limiter);
        }
        let mut plans = self.plans.write().unwrap_or_else(|p| p.into_inner());
        // Another request may have rebuilt it between the two locks.
        if let Some(plan) = plans.get(plan_name).filter(|p| p.rate == rate) {
            return Arc::clone(&plan.limiter);
        }
        let limiter = Arc::new(self.build(rate));
        let entry = PlanLimiter {
            rate,
            limiter: Arc::clone(&limiter),
        };
        plans.insert(plan_name.to_owned(), entry);
        limiter
    }

    fn build(&self, rate: Rate) -> Keyed<C> {
        let quota = Quota::per_second(rate.per_sec).allow_burst(rate.burst);
        RateLimiter::hashmap_with_clock(quota, self.clock.clone())
            .with_middleware::<StateInformationMiddleware>()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PlanLimiter<C>>> {
        self.plans.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_sec: u32, burst: u32) -> Rate {
        Rate::of(&Plan {
            name: "p".into(),
            rate_per_sec: per_sec,
            burst,
            daily_quota: 0,
        })
        .expect("valid")
    }

    fn allowed(remaining: u32, refill_ms: u64) -> RateOutcome {
        RateOutcome::Allowed {
            remaining,
            refill: Duration::from_millis(refill_ms),
        }
    }

    fn limited(ms: u64) -> RateOutcome {
        RateOutcome::Limited {
            retry_after: Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_burst_is_exact_and_refills_one_interval_at_a_time() {
        let clock = FakeRelativeClock::default();
        let local = LocalLimiter::new(clock.clone());
        let r = rate(2, 3);
        assert_eq!(local.check("p", r, "partner:a"), allowed(2, 500));
        assert_eq!(local.check("p", r, "partner:a"), allowed(1, 1_000));
        assert_eq!(local.check("p", r, "partner:a"), allowed(0, 1_500));
        assert_eq!(local.check("p", r, "partner:a"), limited(500));
        clock.advance(Duration::from_millis(200));
        assert_eq!(local.check("p", r, "partner:a"), limited(300));
        clock.advance(Duration::from_millis(300));
        assert_eq!(local.check("p", r, "partner:a"), allowed(0, 1_500));
        assert_eq!(local.check("p", r, "partner:a"), limited(500));
    }

    #[test]
    fn principals_have_budgets_of_their_own() {
        let local = LocalLimiter::new(FakeRelativeClock::default());
        let r = rate(1, 1);
        assert_eq!(local.check("p", r, "partner:a"), allowed(0, 1_000));
        assert_eq!(local.check("p", r, "partner:a"), limited(1_000));
        assert_eq!(local.check("p", r, "partner:b"), allowed(0, 1_000));
    }

    #[test]
    fn a_plan_whose_numbers_changed_starts_over_with_them() {
        let local = LocalLimiter::new(FakeRelativeClock::default());
        assert_eq!(local.check("p", rate(1, 1), "k"), allowed(0, 1_000));
        assert_eq!(local.check("p", rate(1, 1), "k"), limited(1_000));
        assert_eq!(local.check("p", rate(1, 2), "k"), allowed(1, 1_000));
        assert_eq!(local.check("p", rate(1, 2), "k"), allowed(0, 2_000));
        assert_eq!(local.check("p", rate(1, 2), "k"), limited(1_000));
    }

    #[test]
    fn housekeeping_forgets_only_idle_buckets() {
        let clock = FakeRelativeClock::default();
        let local = LocalLimiter::new(clock.clone());
        let r = rate(1, 1);
        assert_eq!(local.check("p", r, "k"), allowed(0, 1_000));
        local.housekeeping();
        assert_eq!(local.check("p", r, "k"), limited(1_000));
        // governor keeps a key until its bucket has been full for one interval.
        clock.advance(Duration::from_secs(2));
        local.housekeeping();
        assert_eq!(local.read()["p"].limiter.len(), 0);
        assert_eq!(local.check("p", r, "k"), allowed(0, 1_000));
    }
}
