//! The ticket to storaged: [`Cleared`] consumes the proofs of steps 6–9, each bound to the same
//! request, so a request that skipped a step, or borrowed another request's proof, cannot be
//! forwarded. None of the proofs can be cloned or built outside its step:
//!
//! ```compile_fail,E0599
//! // A proof cannot be copied into a second request.
//! fn reuse(fresh: photondb_gateway::pipeline::replay::Fresh) {
//!     let _twice = fresh.clone();
//! }
//! ```
//!
//! ```compile_fail,E0451
//! // A proof cannot be made up outside its step.
//! let _ = photondb_gateway::pipeline::rate_limit::WithinLimit { request_id: String::new() };
//! ```
//!
//! ```compile_fail,E0451
//! // Nor can the ticket itself: forwarding needs one built from all four proofs.
//! use photondb_gateway::pipeline::cleared::Cleared;
//! fn forged(auth: photondb_gateway::pipeline::auth::Authenticated) -> Cleared {
//!     Cleared { auth }
//! }
//! ```

use crate::pipeline::auth::{Authenticated, Principal};
use crate::pipeline::policy::Permit;
use crate::pipeline::rate_limit::WithinLimit;
use crate::pipeline::replay::Fresh;

/// Steps 6–9 passed for one request.
#[derive(Debug)]
pub struct Cleared {
    auth: Authenticated,
    _fresh: Fresh,
    _within: WithinLimit,
    permit: Permit,
}

/// The proofs were made for different requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbound;

impl Cleared {
    /// Takes the four proofs; all must vouch for the same request.
    pub fn new(
        auth: Authenticated,
        fresh: Fresh,
        within: WithinLimit,
        permit: Permit,
    ) -> Result<Self, Unbound> {
        let rid = auth.request_id();
        let bound = [fresh.request_id(), within.request_id(), permit.request_id()]
            .iter()
            .all(|r| *r == rid);
        if !bound {
            return Err(Unbound);
        }
        Ok(Self {
            auth,
            _fresh: fresh,
            _within: within,
            permit,
        })
    }

    pub fn request_id(&self) -> &str {
        self.auth.request_id()
    }

    pub fn principal(&self) -> &Principal {
        self.auth.principal()
    }

    pub fn permit(&self) -> &Permit {
        &self.permit
    }
}
