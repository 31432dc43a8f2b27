//! Pipeline step 11: may this operation go to storaged now? Combines the read-only switch,
//! overload shedding and the circuit breaker, and reports the state for health endpoints,
//! with what storaged's own health service last said (polled by the server, not a step).

use std::sync::atomic::{AtomicU8, Ordering};

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

/// What storaged's gRPC health service (`grpc.health.v1.Health/Check`, service "") last
/// answered: storaged says NOT_SERVING once damage made its catalog or a table unreadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageStatus {
    /// No answer yet, or storaged unreachable (or an answer that is neither of the others).
    Unknown,
    Serving,
    NotServing,
}

impl StorageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Serving => "serving",
            Self::NotServing => "not_serving",
        }
    }
}

/// The last [`StorageStatus`], written by the server's poll and read by the health document.
#[derive(Debug, Default)]
pub struct StorageHealth(AtomicU8);

impl StorageHealth {
    pub fn set(&self, status: StorageStatus) {
        self.0.store(status as u8, Ordering::Relaxed);
    }

    pub fn get(&self) -> StorageStatus {
        match self.0.load(Ordering::Relaxed) {
            s if s == StorageStatus::Serving as u8 => StorageStatus::Serving,
            s if s == StorageStatus::NotServing as u8 => StorageStatus::NotServing,
            _ => StorageStatus::Unknown,
        }
    }
}

/// The health gate.
#[derive(Debug)]
pub struct Gate {
    pub breaker: Breaker,
    pub degraded: Degraded,
    /// Reported on the health document only; admission does not look at it.
    pub storage: StorageHealth,
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

    /// The health document. `status` is "unavailable" while the breaker is open or storaged
    /// says NOT_SERVING (`storage`), "degraded" while half open or read-only, else "ok".
    pub fn health(&self, dev_mode: bool) -> Value {
        let breaker = self.breaker.state();
        let read_only = self.degraded.read_only();
        let storage = self.storage.get();
        let status = match (breaker, read_only, storage) {
            (BreakerState::Open, _, _) | (_, _, StorageStatus::NotServing) => "unavailable",
            (BreakerState::HalfOpen, _, _) | (_, true, _) => "degraded",
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
            "storage": storage.as_str(),
            "dev_mode": dev_mode,
        });
        if dev_mode {
            v["warning"] = DEV_MODE_WARNING.into();
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::BreakerConfig;

    fn gate() -> Gate {
        let cfg = BreakerConfig {
            failure_threshold: 1,
            open_for: Duration::from_secs(60),
            half_open_probes: 1,
        };
        Gate {
            breaker: Breaker::new(cfg, Arc::new(ManualClock::default())),
            degraded: Degraded::new(None, 100, 200),
            storage: StorageHealth::default(),
        }
    }

    /// `storage` says what storaged's health service last answered; NOT_SERVING makes the
    /// gateway unavailable, and an unknown answer (none yet, unreachable) changes nothing.
    #[test]
    fn the_health_document_reports_storaged_serving_or_not() {
        let g = gate();
        let h = g.health(false);
        assert_eq!(
            (h["status"].as_str(), h["storage"].as_str()),
            (Some("ok"), Some("unknown"))
        );
        g.storage.set(StorageStatus::Serving);
        let h = g.health(false);
        assert_eq!(
            (h["status"].as_str(), h["storage"].as_str()),
            (Some("ok"), Some("serving"))
        );
        g.storage.set(StorageStatus::NotServing);
        let h = g.health(true);
        assert_eq!(
            (h["status"].as_str(), h["storage"].as_str()),
            (Some("unavailable"), Some("not_serving"))
        );
        assert_eq!(h["breaker"], "closed", "{h}");
        g.storage.set(StorageStatus::Unknown);
        assert_eq!(g.health(false)["status"], "ok");
        // An open breaker is unavailable whatever storaged last said.
        g.storage.set(StorageStatus::Serving);
        let allowed = g.breaker.allow().unwrap();
        g.breaker.record(allowed, true);
        assert_eq!(g.health(false)["status"], "unavailable");
    }
}
