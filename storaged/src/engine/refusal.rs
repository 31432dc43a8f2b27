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

/// A refusal to open, with everything an operator needs to decide what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub mode: RecoveryMode,
    pub problem: Problem,
    pub at_lsn: Option<u64>,
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
        if let Some(at) = self.at_lsn {
            writeln!(f, "  position: LSN {at:#x}")?;
        }
        writeln!(
            f,
            "  redo LSN: {:#x}; {} valid records before the problem, last LSN {:#x}",
            self.redo_lsn, self.valid_records, self.last_valid_lsn
        )?;
        writeln!(f, "  nothing on disk was changed")?;
        write!(f, "  next step: {}", self.advice())
    }
}

impl std::error::Error for Refusal {}
