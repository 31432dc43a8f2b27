//! Pipeline step 8 (slot): per-principal rate limit and quota. [`WithinLimit`] can only be
//! built here; the rate-limit issue adds plan-based limiters.

use crate::config::DevMode;
use crate::pipeline::auth::Authenticated;

/// Proof that step 8 admitted one request; neither `Clone` nor `Copy`, bound to its request id.
#[derive(Debug)]
pub struct WithinLimit {
    request_id: String,
}

impl WithinLimit {
    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn of(auth: &Authenticated) -> Self {
        Self {
            request_id: auth.request_id().to_owned(),
        }
    }
}

/// Over the limit: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after_secs: u64,
}

/// The step-8 slot.
pub trait PrincipalLimiter: Send + Sync {
    fn admit(&self, auth: &Authenticated) -> Result<WithinLimit, OverLimit>;
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
    fn admit(&self, auth: &Authenticated) -> Result<WithinLimit, OverLimit> {
        Ok(WithinLimit::of(auth))
    }
}
