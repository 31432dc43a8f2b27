//! Why recovery refused to open a store: what it found, where, and what the operator can do.
//! A leaf next to the errors (an `OpenError` carries it), importing only the mode it names.

use crate::engine::types::RecoveryMode;
use std::fmt;

/// What stopped recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A bad record where a crash cannot leave one.
    Corruption,
    /// A torn tail, refused because the mode is strict.
    TornTail,
    /// Neither control slot is valid.
    ControlFile,
}

/// Where in the log a problem is: its LSN, and the segment file and byte offset holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub lsn: u64,
    /// The segment's file name under `wal/` (`<start-lsn hex16>.wal`).
    pub segment: String,
    pub offset: u64,
}

impl Position {
    /// A position in a log of `segment_size` segments (the control file's, never 0).
    pub fn new(lsn: u64, segment_size: u64) -> Position {
        let start = lsn / segment_size.max(1) * segment_size.max(1);
        Position {
            lsn,
            segment: format!("{start:016x}.wal"),
            offset: lsn - start,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LSN {:#x}: segment {}, byte offset {}",
            self.lsn, self.segment, self.offset
        )
    }
}

/// A refusal to open, with everything an operator needs to decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub mode: RecoveryMode,
    pub problem: Problem,
    pub at: Option<Position>,
    pub reason: String,
    pub redo_lsn: u64,
    pub valid_records: u64,
    pub last_valid_lsn: u64,
}

impl Refusal {
    fn advice(&self) -> &'static str {
        match self.problem {
            Problem::Corruption => {
                "restore from a backup, or keep the valid prefix offline with \
                 `photondb-storaged recover --data-dir DIR --mode salvage` (acknowledged commits \
                 after the damage are lost and reported; `--mode point-in-time --until-lsn` \
                 stops earlier), then `verify`"
            }
            Problem::TornTail => {
                "open with the default `torn-tail` mode (or `photondb-storaged recover \
                 --data-dir DIR --mode torn-tail`) to cut the torn tail into quarantine/"
            }
            Problem::ControlFile => {
                "restore the control file from a backup; the data was not touched"
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recovery refused to open the store (mode {}):",
            self.mode
        )?;
        writeln!(f, "  problem:  {:?}: {}", self.problem, self.reason)?;
        if let Some(at) = &self.at {
            writeln!(f, "  position: {at}")?;
        }
        writeln!(
            f,
            "  redo LSN: {:#x}; {} valid records from there to the problem, the last valid one \
             at LSN {:#x}",
            self.redo_lsn, self.valid_records, self.last_valid_lsn
        )?;
        writeln!(f, "  nothing on disk was changed")?;
        write!(f, "  next step: {}", self.advice())
    }
}

impl std::error::Error for Refusal {}
