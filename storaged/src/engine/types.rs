//! The engine's public value types: options, documents, conditions, scans, statistics.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::clock::{Clock, SystemClock};

/// How recovery treats the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Truncate a proven torn tail (quarantining it); refuse on corruption.
    #[default]
    TornTail,
    /// Refuse anything but a clean end of log.
    Strict,
    /// Replay records up to and including `until_lsn`; later records are quarantined.
    PointInTime { until_lsn: u64 },
    /// Offline rescue: keep the valid prefix, quarantine the rest, start anyway, report losses.
    Salvage,
}

impl std::fmt::Display for RecoveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryMode::TornTail => f.write_str("torn-tail"),
            RecoveryMode::Strict => f.write_str("strict"),
            RecoveryMode::PointInTime { until_lsn } => {
                write!(f, "point-in-time (until LSN {until_lsn:#x})")
            }
            RecoveryMode::Salvage => f.write_str("salvage"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory bound for cached pages; dirty pages past it trigger a checkpoint.
    pub buffer_pool_bytes: usize,
    /// Checkpoint after this many WAL bytes since the last one.
    pub checkpoint_wal_bytes: u64,
    /// Checkpoint when a commit finds the last checkpoint older than this.
    pub checkpoint_interval: Duration,
    /// How often the durable end of the log is recorded in the control file (by the thread
    /// `Engine::spawn_checkpointer` starts): commits acknowledged longer ago than this are
    /// missed by recovery if they vanish from the log (DESIGN §6).
    pub durable_mark_interval: Duration,
    pub recovery: RecoveryMode,
    /// WAL segment size, used only when a new store is created (later the control file's
    /// value rules). From 256 KiB to 1 GiB, a multiple of 4 KiB.
    pub wal_segment_size: u64,
    /// Create a store in a directory that has none. The offline tools turn this off, so a
    /// mistyped path is an error instead of a new, empty, "clean" store.
    pub create_if_missing: bool,
    /// Time for checkpoint intervals, reported durations and stamps (tests pass a manual one).
    pub clock: Arc<dyn Clock>,
    /// Continuous WAL archiving (`archive.rs`); `None`: off.
    pub archive: Option<crate::engine::archive::ArchiveOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            buffer_pool_bytes: 64 << 20,
            checkpoint_wal_bytes: 64 << 20,
            checkpoint_interval: Duration::from_secs(300),
            durable_mark_interval: Duration::from_secs(1),
            recovery: RecoveryMode::TornTail,
            wal_segment_size: 16 << 20,
            create_if_missing: true,
            clock: Arc::new(SystemClock),
            archive: None,
        }
    }
}

/// A WAL segment size the engine accepts: options are checked with it when a store is created,
/// and the control file's value when it is read (a segment is read whole during recovery).
pub(crate) fn valid_segment_size(size: u64) -> bool {
    (256 << 10..=1 << 30).contains(&size) && size.is_multiple_of(4096)
}

impl EngineOptions {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !valid_segment_size(self.wal_segment_size) {
            return Err(
                "wal_segment_size must be from 256 KiB to 1 GiB and a multiple of 4 KiB".into(),
            );
        }
        if self.checkpoint_wal_bytes == 0 {
            return Err("checkpoint_wal_bytes must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub key: String,
    pub value: Vec<u8>,
    /// The LSN of the commit that wrote this value.
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Any,
    IfVersion(u64),
    IfAbsent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        key: String,
        value: Vec<u8>,
        condition: Condition,
    },
    Delete {
        key: String,
        condition: Condition,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    pub prefix: String,
    pub start_after: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub docs: Vec<Document>,
    /// Pass as `start_after` for the next page; `None` when there are no more.
    pub next_start_after: Option<String>,
}

/// One page of database or table names, paged as a [`Scan`] is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    pub start_after: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub names: Vec<String>,
    /// Pass as `start_after` for the next page; `None` when there are no more.
    pub next_start_after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub redo_lsn: u64,
    pub pages_written: usize,
    pub segments_retired: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub commits: u64,
    pub fsyncs: u64,
    pub fsync_nanos_sum: u64,
    pub fsync_count: u64,
    pub wal_bytes: u64,
    pub durable_lsn: u64,
    pub checkpoints: u64,
    pub last_checkpoint_duration: Duration,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub corrupt_pages_seen: u64,
}
