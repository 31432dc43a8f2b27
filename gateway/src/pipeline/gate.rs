//! Pipeline step 11: may this operation go to storaged now? Combines the read-only switch,
//! overload shedding and the circuit breaker, and reports the state for health endpoints.

use serde_json::{Value, json};

use crate::breaker::{Allowed, Breaker, BreakerState};
use crate::degraded::{Degraded, InFlight, Shed};
use crate::errors::Refusal;

/// Why step 11 did not admit a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// Writes are refused (operator switch, or shed first under load).
    ReadOnly,
    /// Too many calls in flight.
    Overloaded,
    /// The circuit breaker is open.
    BreakerOpen,
}

impl From<Closed> for Refusal {
    fn from(c: Closed) -> Self {
        match c {
            Closed::ReadOnly => Self::ReadOnly,
            Closed::Overloaded => Self::Overloaded,
            Closed::BreakerOpen => Self::BreakerOpen,
        }
    }
}

/// Proof that step 11 admitted a call. Report the outcome with [`Admission::finish`]; one
/// dropped unfinished (the client went away mid-call) counts as a failure, so a half-open
/// probe is never lost.
#[derive(Debug)]
pub struct Admission<'a> {
    breaker: &'a Breaker,
    allowed: Option<Allowed>,
    _inflight: InFlight<'a>,
}

impl Admission<'_> {
    /// Reports how the admitted call went.
    pub fn finish(mut self, upstream_failed: bool) {
        if let Some(allowed) = self.allowed.take() {
            self.breaker.record(allowed, upstream_failed);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if let Some(allowed) = self.allowed.take() {
            self.breaker.record(allowed, true);
        }
    }
}

/// The health gate.
#[derive(Debug)]
pub struct Gate {
    pub breaker: Breaker,
    pub degraded: Degraded,
}

/// Shown on `/public/health` and `/v1/health` while dev mode is on.
pub const DEV_MODE_WARNING: &str =
    "DEV MODE: requests are NOT authenticated or authorized; never expose this gateway";

impl Gate {
    /// Admits an operation, shedding writes first under load or in read-only mode.
    pub fn admit(&self, is_read: bool) -> Result<Admission<'_>, Closed> {
        let inflight = self.degraded.enter(is_read).map_err(|shed| match shed {
            Shed::Writes => Closed::ReadOnly,
            Shed::All => Closed::Overloaded,
        })?;
        let allowed = self.breaker.allow().map_err(|_| Closed::BreakerOpen)?;
        Ok(Admission {
            breaker: &self.breaker,
            allowed: Some(allowed),
            _inflight: inflight,
        })
    }

    /// The health document.
    pub fn health(&self, dev_mode: bool) -> Value {
        let breaker = self.breaker.state();
        let read_only = self.degraded.read_only();
        let status = match (breaker, read_only) {
            (BreakerState::Open, _) => "unavailable",
            (BreakerState::HalfOpen, _) | (_, true) => "degraded",
            _ => "ok",
        };
        let reason = read_only.then(|| {
            if self.degraded.operator_read_only() {
                "operator"
            } else {
                "overload"
            }
        });
        let mut v = json!({
            "status": status,
            "read_only": read_only,
            "read_only_reason": reason,
            "breaker": breaker.as_str(),
            "dev_mode": dev_mode,
        });
        if dev_mode {
            v["warning"] = DEV_MODE_WARNING.into();
        }
        v
    }
}
