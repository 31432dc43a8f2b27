//! storaged's audit log: hash-chained JSON lines (DESIGN §8). Never holds secrets or documents.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use photondb_proto::audit::{GENESIS, chain_line, line_hash};
use photondb_proto::signing::Timestamp;
use serde_json::{Map, Value};

use crate::engine::{Clock, SystemClock};

/// An append-only, hash-chained event log.
#[derive(Debug)]
pub struct Audit {
    state: Mutex<State>,
    /// Stamps each event (the daemon passes the engine's clock).
    clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct State {
    file: std::fs::File,
    prev: String,
}

impl Audit {
    /// Opens (or creates) the log and continues its chain, stamping events by the system clock.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::open_with(path, Arc::new(SystemClock))
    }

    /// Opens (or creates) the log and continues its chain, stamping events by `clock`.
    pub fn open_with(path: &Path, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // One writer per log: a second one would fork the hash chain.
        if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another process is writing this audit log",
            ));
        }
        let existing = std::fs::read_to_string(path).unwrap_or_default();
        let prev = existing
            .lines()
            .last()
            .map_or_else(|| GENESIS.to_owned(), line_hash);
        Ok(Self {
            state: Mutex::new(State { file, prev }),
            clock,
        })
    }

    fn timestamp(&self) -> Timestamp {
        Timestamp::from_unix(i64::try_from(self.clock.unix_ms() / 1000).unwrap_or(i64::MAX))
    }

    /// Appends one event. Failing to audit is logged, never fatal to the request.
    pub fn record<const N: usize>(&self, kind: &str, fields: [(&str, Value); N]) {
        let mut event = Map::new();
        event.insert("ts".into(), self.timestamp().format().into());
        event.insert("source".into(), "storaged".into());
        event.insert("kind".into(), kind.into());
        for (name, value) in fields {
            event.insert(name.into(), value);
        }
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (line, hash) = chain_line(event, &state.prev);
        // One write call per line (O_APPEND): lines never interleave, and a crash can tear only the last.
        match state.file.write_all(format!("{line}\n").as_bytes()) {
            Ok(()) => state.prev = hash,
            Err(err) => tracing::error!(error = %err, "audit log write failed"),
        }
    }
}
