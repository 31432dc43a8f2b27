//! Pipeline step 9 (slot): authorization, deny by default. [`Permit`] can only be built here;
//! the policy issue adds the file-based policy engine.

use crate::config::DevMode;
use crate::operation::Target;
use crate::pipeline::auth::Authenticated;

/// Proof that step 9 allowed one target for one request; neither `Clone` nor `Copy`.
#[derive(Debug)]
pub struct Permit {
    request_id: String,
    target: Target,
}

impl Permit {
    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// What it allows.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn of(auth: &Authenticated, target: &Target) -> Self {
        Self {
            request_id: auth.request_id().to_owned(),
            target: target.clone(),
        }
    }
}

/// Denied: the response names the action and resource, never the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub Target);

/// The step-9 slot.
pub trait Policy: Send + Sync {
    fn authorize(&self, auth: &Authenticated, target: &Target) -> Result<Permit, Denied>;
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
    fn authorize(&self, auth: &Authenticated, target: &Target) -> Result<Permit, Denied> {
        Ok(Permit::of(auth, target))
    }
}
