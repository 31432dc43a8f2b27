//! Pipeline step 8 (slot): per-principal rate limit and daily quota by plan (DESIGN §2,
//! issue 10 item 4). [`WithinLimit`] can only be built here.
//!
//! A principal's plan: `partner:<id>` → that partner's plan; `anonymous` → the policy's public
//! plan (one budget shared by every anonymous `/public/*` read); anyone else → the default
//! plan. The plan's GCRA runs in process (`local.rs`) or, when configured, in the Redis several
//! gateways share (`shared.rs`); the daily quota is counted in the gateway's sled database
//! (`quota.rs`, survives a restart) or in that Redis. If Redis fails, `on_redis_error` decides:
//! this gateway's own limiter serves the request (default; counted, logged once per outage)
//! or the request is refused with 503. Every answer carries `RateLimit-Policy` / `RateLimit`
//! headers (`headers.rs`); a refusal's `Retry-After` comes from `retry_after_secs`.

mod headers;
mod local;
mod quota;
mod shared;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use crate::config::DevMode;
use crate::pipeline::auth::{Authenticated, Proof};
use crate::policy::model::{Plan, PolicySet};
use crate::redis_conn::{RedisDown, SharedRedis};
use headers::{Daily, Report, ceil_secs};
use local::{LocalLimiter, Rate, RateOutcome};
use quota::Day;
use shared::SharedLimiter;

pub use local::{LimiterClock, RealClock};
pub use quota::QuotaStore;

/// Over the plan's rate: 429.
pub const RATE_LIMITED: &str = "rate_limited";
/// Over the plan's daily quota: 429 until the next UTC midnight.
pub const QUOTA_EXHAUSTED: &str = "quota_exhausted";
/// The limiter's store (Redis with `on_redis_error = "refuse"`, or the quota database) is
/// down: 503.
pub const STORE_UNAVAILABLE: &str = "rate_limit_store_unavailable";

/// Proof that step 8 admitted one request; neither `Clone` nor `Copy`, bound to its request id.
#[derive(Debug)]
pub struct WithinLimit {
    request_id: String,
    /// `RateLimit-Policy` / `RateLimit` for the answer.
    pub headers: Vec<(&'static str, String)>,
}

impl WithinLimit {
    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn of(auth: &Authenticated, headers: Vec<(&'static str, String)>) -> Self {
        Self {
            request_id: auth.request_id().to_owned(),
            headers,
        }
    }
}

/// Refused: `code` is [`RATE_LIMITED`], [`QUOTA_EXHAUSTED`] or [`STORE_UNAVAILABLE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    pub code: &'static str,
    pub retry_after_secs: u64,
    /// `RateLimit-Policy` / `RateLimit` (not `Retry-After`: the refusal adds it).
    pub headers: Vec<(&'static str, String)>,
}

impl OverLimit {
    fn store_unavailable() -> Self {
        Self {
            code: STORE_UNAVAILABLE,
            retry_after_secs: 1,
            headers: Vec::new(),
        }
    }
}

/// The step-8 slot.
#[async_trait]
pub trait PrincipalLimiter: Send + Sync {
    async fn admit(
        &self,
        auth: &Authenticated,
        client: Option<IpAddr>,
        policy: &PolicySet,
        now_unix: i64,
    ) -> Result<WithinLimit, OverLimit>;
}

/// What a failing shared (Redis) limiter does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRedisError {
    /// This gateway's own limiter and quota counters decide (budgets are per gateway until
    /// Redis is back).
    #[default]
    Local,
    /// 503 [`STORE_UNAVAILABLE`].
    Refuse,
}

/// What the limiters said about one request, wherever they ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) rate: RateOutcome,
    /// The day's count including this request; `None` when not counted (refused by the rate,
    /// or the plan has no daily quota).
    pub(crate) count: Option<u64>,
}

/// The real limiter.
pub struct PlanLimits<C: LimiterClock = RealClock> {
    clock: C,
    local: LocalLimiter<C>,
    quota: QuotaStore,
    shared: Option<Shared>,
}

struct Shared {
    limiter: SharedLimiter,
    on_error: OnRedisError,
    fallbacks: AtomicU64,
    /// Whether the last shared check succeeded: logs once per outage.
    healthy: AtomicBool,
}

impl<C: LimiterClock> std::fmt::Debug for PlanLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on_redis_error = self.shared.as_ref().map(|s| s.on_error);
        f.debug_struct("PlanLimits")
            .field("on_redis_error", &on_redis_error)
            .finish_non_exhaustive()
    }
}

impl PlanLimits<RealClock> {
    /// In-process limits; daily quotas counted in `quota`.
    pub fn local(quota: QuotaStore) -> Self {
        Self::with_clock(quota, None, RealClock)
    }

    /// Limits shared through `redis`, with this gateway's own as the fallback.
    pub fn shared(quota: QuotaStore, redis: SharedRedis, on_error: OnRedisError) -> Self {
        Self::with_clock(quota, Some((redis, on_error)), RealClock)
    }
}

impl<C: LimiterClock> PlanLimits<C> {
    pub fn with_clock(
        quota: QuotaStore,
        shared: Option<(SharedRedis, OnRedisError)>,
        clock: C,
    ) -> Self {
        let shared = shared.map(|(redis, on_error)| Shared {
            limiter: SharedLimiter::new(redis),
            on_error,
            fallbacks: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        });
        Self {
            local: LocalLimiter::new(clock.clone()),
            clock,
            quota,
            shared,
        }
    }

    /// Requests the local limiter decided because Redis failed (a metric).
    pub fn redis_fallbacks(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.fallbacks.load(Ordering::Relaxed))
    }

    /// Periodic: forgets idle principals' buckets and the quota counters of days before
    /// yesterday; returns how many counters went. Scans sled: run it off the async workers.
    pub fn housekeeping(&self, now_unix: i64) -> usize {
        self.local.housekeeping();
        let yesterday = Day::of(now_unix.saturating_sub(86_400));
        self.quota.purge_before(&yesterday.date)
    }

    /// Writes the quota counts held only in memory (shutdown).
    pub fn persist(&self) -> sled::Result<()> {
        self.quota.flush()
    }

    async fn admit_principal(
        &self,
        principal: &str,
        anonymous: bool,
        policy: &PolicySet,
        now_unix: i64,
    ) -> Result<Report, OverLimit> {
        let Some((plan, rate)) = plan_of(policy, principal, anonymous) else {
            return Err(no_plan(principal));
        };
        let day = Day::of(now_unix);
        let outcome = match self.check_shared(principal, plan, rate, &day).await? {
            Some(outcome) => outcome,
            None => self.check_local(principal, plan, rate, &day)?,
        };
        judge(plan, &day, outcome)
    }

    /// `None`: no shared limiter, or it failed and the local one is to decide.
    async fn check_shared(
        &self,
        principal: &str,
        plan: &Plan,
        rate: Rate,
        day: &Day,
    ) -> Result<Option<Outcome>, OverLimit> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let now = self.clock.shared_micros();
        let checked = shared
            .limiter
            .check(principal, rate, plan.daily_quota, day, now);
        match checked.await {
            Ok(outcome) => {
                shared.up();
                Ok(Some(outcome))
            }
            Err(why) => shared.down(&why).map(|()| None),
        }
    }

    fn check_local(
        &self,
        principal: &str,
        plan: &Plan,
        rate: Rate,
        day: &Day,
    ) -> Result<Outcome, OverLimit> {
        let rate = self.local.check(&plan.name, rate, principal);
        let counted = matches!(rate, RateOutcome::Allowed { .. }) && plan.daily_quota > 0;
        let count = if counted {
            Some(self.quota.bump(principal, day).map_err(quota_down)?)
        } else {
            None
        };
        Ok(Outcome { rate, count })
    }
}

impl Shared {
    fn up(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("shared rate limits are back");
        }
    }

    fn down(&self, why: &RedisDown) -> Result<(), OverLimit> {
        if self.healthy.swap(false, Ordering::Relaxed) {
            let on_error = self.on_error;
            tracing::warn!(error = %why, ?on_error, "shared rate limits unavailable");
        }
        match self.on_error {
            OnRedisError::Refuse => Err(OverLimit::store_unavailable()),
            OnRedisError::Local => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl<C: LimiterClock> PrincipalLimiter for PlanLimits<C> {
    /// The client address is not a key: step 3's per-IP limit already bounds each address,
    /// and the anonymous budget is one on purpose.
    async fn admit(
        &self,
        auth: &Authenticated,
        _client: Option<IpAddr>,
        policy: &PolicySet,
        now_unix: i64,
    ) -> Result<WithinLimit, OverLimit> {
        let anonymous = matches!(auth.proof(), Proof::Anonymous);
        let principal = auth.principal().as_str();
        let report = self
            .admit_principal(principal, anonymous, policy, now_unix)
            .await?;
        Ok(WithinLimit::of(auth, report.headers()))
    }
}

/// The principal's plan and its numbers.
fn plan_of<'p>(
    policy: &'p PolicySet,
    principal: &str,
    anonymous: bool,
) -> Option<(&'p Plan, Rate)> {
    let partner = principal
        .strip_prefix("partner:")
        .and_then(|id| policy.partners.get(id));
    let name: &str = match (anonymous, partner) {
        (true, _) => policy
            .public_plan
            .as_deref()
            .unwrap_or(policy.default_plan.as_str()),
        (false, Some(partner)) => partner.plan.as_str(),
        (false, None) => policy.default_plan.as_str(),
    };
    let plan = policy.plans.get(name)?;
    Some((plan, Rate::of(plan)?))
}

/// Validation makes this impossible; refusing is the safe answer if it happens anyway.
fn no_plan(principal: &str) -> OverLimit {
    tracing::error!(principal, "no valid plan for principal; refusing");
    OverLimit {
        code: RATE_LIMITED,
        retry_after_secs: 60,
        headers: Vec::new(),
    }
}

fn quota_down(e: sled::Error) -> OverLimit {
    tracing::error!(error = %e, "quota store failed");
    OverLimit::store_unavailable()
}

/// The refusal (rate first, then quota) or the report of a request let through.
fn judge(plan: &Plan, day: &Day, outcome: Outcome) -> Result<Report, OverLimit> {
    let mut report = Report::new(plan);
    report.daily = (plan.daily_quota > 0).then(|| Daily {
        quota: plan.daily_quota,
        left: outcome.count.map(|c| plan.daily_quota.saturating_sub(c)),
        reset_secs: day.secs_left,
    });
    let (remaining, reset_secs) = match outcome.rate {
        RateOutcome::Allowed { remaining, refill } => (remaining, ceil_secs(refill)),
        RateOutcome::Limited { retry_after } => (0, ceil_secs(retry_after)),
    };
    report.burst_left = Some((remaining, reset_secs));
    let refusal = |code, retry_after_secs| OverLimit {
        code,
        retry_after_secs,
        headers: report.headers(),
    };
    if matches!(outcome.rate, RateOutcome::Limited { .. }) {
        return Err(refusal(RATE_LIMITED, reset_secs));
    }
    if outcome.count.is_some_and(|c| c > plan.daily_quota) {
        return Err(refusal(QUOTA_EXHAUSTED, day.secs_left));
    }
    Ok(report)
}

/// Dev mode only: no per-principal limit (the per-IP limit of step 3 still applies).
#[derive(Debug)]
pub struct DevUnlimited(DevMode);

impl DevUnlimited {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

#[async_trait]
impl PrincipalLimiter for DevUnlimited {
    async fn admit(
        &self,
        auth: &Authenticated,
        _client: Option<IpAddr>,
        _policy: &PolicySet,
        _now_unix: i64,
    ) -> Result<WithinLimit, OverLimit> {
        Ok(WithinLimit::of(auth, Vec::new()))
    }
}

#[cfg(test)]
mod tests;
