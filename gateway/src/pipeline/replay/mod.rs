//! Pipeline step 7 (slot): the replay guard, after authentication. [`Fresh`] can only be built
//! here. Unsigned requests (anonymous, dev) carry no request id to remember.

use crate::config::DevMode;
use crate::pipeline::auth::Authenticated;

/// Proof that step 7 ran for one request; neither `Clone` nor `Copy`, bound to its request id.
#[derive(Debug)]
pub struct Fresh {
    request_id: String,
}

impl Fresh {
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

/// The request id was seen before, or the timestamp is outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed;

/// The step-7 slot.
pub trait ReplayGuard: Send + Sync {
    fn check(&self, auth: &Authenticated) -> Result<Fresh, Replayed>;
}

/// Dev mode only: remembers nothing, refuses signed requests it cannot check.
#[derive(Debug)]
pub struct DevReplayGuard(DevMode);

impl DevReplayGuard {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

impl ReplayGuard for DevReplayGuard {
    fn check(&self, auth: &Authenticated) -> Result<Fresh, Replayed> {
        if auth.is_signed() {
            Err(Replayed)
        } else {
            Ok(Fresh::of(auth))
        }
    }
}
