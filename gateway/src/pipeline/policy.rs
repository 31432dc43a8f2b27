//! Pipeline step 9 (slot): authorization, deny by default. [`Permit`] can only be built here;
//! the policy issue adds the file-based policy engine.

use crate::config::DevMode;
use crate::operation::Target;
use crate::pipeline::auth::Principal;

/// Proof that step 9 allowed this target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    target: Target,
}

impl Permit {
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Denied: the response names the action and resource, never the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub Target);

/// The step-9 slot.
pub trait Policy: Send + Sync {
    fn authorize(&self, principal: &Principal, target: &Target) -> Result<Permit, Denied>;
}

/// Dev mode only: permits everything.
#[derive(Debug)]
pub struct DevAllowAll(DevMode);

impl DevAllowAll {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

impl Policy for DevAllowAll {
    fn authorize(&self, _principal: &Principal, target: &Target) -> Result<Permit, Denied> {
        Ok(Permit {
            target: target.clone(),
        })
    }
}
