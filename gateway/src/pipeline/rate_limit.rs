//! Pipeline step 8 (slot): per-principal rate limit and quota. [`WithinLimit`] can only be
//! built here; the rate-limit issue adds plan-based limiters.

use crate::config::DevMode;
use crate::pipeline::auth::Principal;

/// Proof that step 8 admitted the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithinLimit(());

/// Over the limit: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after_secs: u64,
}

/// The step-8 slot.
pub trait PrincipalLimiter: Send + Sync {
    fn admit(&self, principal: &Principal) -> Result<WithinLimit, OverLimit>;
}

/// Dev mode only: no per-principal limit (the per-IP limit of step 3 still applies).
#[derive(Debug)]
pub struct DevUnlimited(DevMode);

impl DevUnlimited {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

impl PrincipalLimiter for DevUnlimited {
    fn admit(&self, _principal: &Principal) -> Result<WithinLimit, OverLimit> {
        Ok(WithinLimit(()))
    }
}
