//! storaged's audit log: hash-chained JSON lines (DESIGN §8), written by photondb-proto's one
//! [`AuditLog`] and stamped by the daemon's clock. Never holds secrets or documents.

use std::path::Path;
use std::sync::Arc;

use photondb_proto::audit::AuditLog;
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
    /// Opens (or creates) the log and continues its chain, stamping events by the system clock.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, Arc::new(SystemClock))
    }

    /// Opens (or creates) the log and continues its chain, stamping events by `clock`.
    pub fn open_with(path: &Path, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        Ok(Self {
            log: AuditLog::open(path, "storaged")?,
            clock,
        })
    }

    /// Appends one event. Failing to audit is logged, never fatal to the request.
    pub fn record<const N: usize>(&self, kind: &str, fields: [(&str, Value); N]) {
        let secs = i64::try_from(self.clock.unix_ms() / 1000).unwrap_or(i64::MAX);
        self.log.record(Timestamp::from_unix(secs), kind, fields);
    }
}
