//! storaged's audit log: hash-chained, anchored JSON lines (DESIGN §8), written by
//! photondb-proto's one [`AuditLog`] and stamped by the daemon's clock. Never holds secrets or
//! documents.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use photondb_proto::audit::{AuditLog, AuditOptions};
use photondb_proto::signing::Timestamp;
use serde_json::Value;

use crate::engine::{Clock, SystemClock};

/// storaged's event log.
#[derive(Debug)]
pub struct Audit {
    log: AuditLog,
    /// Stamps each event (the daemon passes the engine's clock).
    clock: Arc<dyn Clock>,
}

impl Audit {
    /// Opens (or creates) the log and continues its chain, stamping events by the system clock
    /// and writing no anchors (the offline tools; the daemon anchors at its next start).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, AuditOptions::default(), Arc::new(SystemClock))
    }

    /// Opens (or creates) the log and continues its chain, stamping events by `clock`.
    pub fn open_with(
        path: &Path,
        options: AuditOptions,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let at = stamp(clock.as_ref());
        Ok(Self {
            log: AuditLog::open(path, "storaged", options, at)?,
            clock,
        })
    }

    /// Appends one event. Failing to audit is logged, never fatal to the request.
    pub fn record<const N: usize>(&self, kind: &str, fields: [(&str, Value); N]) {
        self.log.record(stamp(self.clock.as_ref()), kind, fields);
    }

    /// A clean stop: signs for every line not yet anchored.
    pub fn close(&self) {
        self.log.close(stamp(self.clock.as_ref()));
    }

    /// Anchors and rotates by time while the daemon runs; the task ends with the log.
    pub fn spawn_ticker(audit: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(audit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(audit) => audit.log.tick(stamp(audit.clock.as_ref())),
                    None => return,
                }
            }
        });
    }
}

fn stamp(clock: &dyn Clock) -> Timestamp {
    Timestamp::from_unix(i64::try_from(clock.unix_ms() / 1000).unwrap_or(i64::MAX))
}
