//! Pipeline step 11: may this operation go to storaged now? Combines the read-only switch,
//! overload shedding and the circuit breaker, and reports the state for health endpoints.

use serde_json::{Value, json};

use crate::breaker::{Allowed, Breaker, BreakerState};
use crate::degraded::{Degraded, InFlight, Shed};
use crate::errors::Refusal;

/// Proof that step 11 admitted a call; hand it back to [`Gate::record`].
#[derive(Debug)]
pub struct Admission<'a> {
    allowed: Allowed,
    _inflight: InFlight<'a>,
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
    pub fn admit(&self, is_read: bool) -> Result<Admission<'_>, Refusal> {
        let inflight = self.degraded.enter(is_read).map_err(|shed| match shed {
            Shed::Writes => Refusal::ReadOnly,
            Shed::All => Refusal::Overloaded,
        })?;
        let allowed = self.breaker.allow().map_err(|_| Refusal::BreakerOpen)?;
        Ok(Admission {
            allowed,
            _inflight: inflight,
        })
    }

    /// Reports how the admitted call went.
    pub fn record(&self, admission: Admission<'_>, upstream_failed: bool) {
        self.breaker.record(admission.allowed, upstream_failed);
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
