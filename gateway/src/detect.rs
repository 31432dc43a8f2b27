//! Detection for the incident playbook's "alert on anomaly" (hardening spec §13): refusals
//! that signal an attack are counted per minute — signature failures (any 401 of
//! authentication) and quota bypass attempts (requests sent on after a 429) — exported as
//! metrics, and past an optional per-minute threshold raise an alert: a gauge at 1, one
//! warning and one audit line when it starts and when it ends.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::errors::Refusal;

/// What is watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    SignatureFailures,
    QuotaBypass,
}

impl Signal {
    pub const ALL: [Self; 2] = [Self::SignatureFailures, Self::QuotaBypass];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignatureFailures => "signature_failures",
            Self::QuotaBypass => "quota_bypass",
        }
    }

    /// The signal a refusal counts for, if any.
    pub fn of(refusal: &Refusal) -> Option<Self> {
        match refusal {
            Refusal::Unauthenticated(_) => Some(Self::SignatureFailures),
            Refusal::RateLimited { .. } => Some(Self::QuotaBypass),
            _ => None,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How long one count runs.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The per-minute counts and the alerts.
#[derive(Debug)]
pub struct Detector {
    /// Per-minute thresholds by signal; 0: no alert.
    thresholds: [u64; 2],
    counting: [AtomicU64; 2],
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    alerting: [bool; 2],
}

/// One signal's minute as it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minute {
    pub signal: Signal,
    pub count: u64,
    pub alert: bool,
    /// The alert started or ended with this minute.
    pub changed: bool,
}

impl Detector {
    pub fn new(signature_failures_per_min: u64, quota_bypass_per_min: u64, now: Instant) -> Self {
        Self {
            thresholds: [signature_failures_per_min, quota_bypass_per_min],
            counting: [AtomicU64::new(0), AtomicU64::new(0)],
            window: Mutex::new(Window {
                started: now,
                alerting: [false; 2],
            }),
        }
    }

    /// Counts one refusal (cheap: one atomic add, only for the refusals watched).
    pub fn note(&self, refusal: &Refusal) {
        if let Some(signal) = Signal::of(refusal) {
            self.counting[signal.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When a minute has ended: its counts and alerts, and a new minute begins.
    pub fn roll(&self, now: Instant) -> Option<[Minute; 2]> {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(w.started) < WINDOW {
            return None;
        }
        w.started = now;
        Some(Signal::ALL.map(|signal| {
            let i = signal.index();
            let count = self.counting[i].swap(0, Ordering::Relaxed);
            let alert = self.thresholds[i] > 0 && count >= self.thresholds[i];
            let changed = alert != w.alerting[i];
            w.alerting[i] = alert;
            Minute {
                signal,
                count,
                alert,
                changed,
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock as _, ManualClock};

    #[test]
    fn a_spike_raises_an_alert_for_its_minute_and_a_quiet_minute_ends_it() {
        let t0 = ManualClock::default().now();
        let d = Detector::new(3, 0, t0);
        for _ in 0..3 {
            d.note(&Refusal::Unauthenticated("signature_invalid"));
        }
        d.note(&Refusal::NotFound);
        let limited = Refusal::RateLimited {
            code: "rate_limited",
            retry_after_secs: 1,
            headers: Vec::new(),
        };
        d.note(&limited);
        assert_eq!(d.roll(t0 + Duration::from_secs(59)), None);
        let [sig, quota] = d.roll(t0 + WINDOW).unwrap();
        assert_eq!((sig.count, sig.alert, sig.changed), (3, true, true));
        assert_eq!(
            (quota.count, quota.alert),
            (1, false),
            "no threshold: no alert"
        );
        let [sig, _] = d.roll(t0 + 2 * WINDOW).unwrap();
        assert_eq!((sig.count, sig.alert, sig.changed), (0, false, true));
    }
}
