//! What recovery tells the operator: a report when it opens, a refusal when it will not.

use crate::engine::types::RecoveryMode;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why bytes were cut from the end of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    /// The remains of a write a crash interrupted: never acknowledged.
    TornTail,
    /// Salvage cut at corruption: acknowledged commits after this point are lost.
    Corruption,
    /// Point-in-time recovery discarded the records after the target.
    PointInTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutReport {
    pub kind: CutKind,
    pub at_lsn: u64,
    pub bytes: u64,
    pub reason: String,
    /// Where the cut bytes were copied before being removed from the log.
    pub quarantined: Vec<PathBuf>,
    /// Salvage: a page (number, LSN) the data file already held from at or after the cut, left
    /// by a checkpoint cut off before its control slot. The store may then mix two points in
    /// time.
    pub newer_page: Option<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub mode: RecoveryMode,
    pub redo_lsn: u64,
    pub records_replayed: u64,
    pub bytes_replayed: u64,
    /// LSN of the last record kept (0 if none).
    pub last_lsn: u64,
    /// Where the next record will be written.
    pub end_lsn: u64,
    pub pages_restored: usize,
    /// The restored pages are held dirty in the buffer pool and written by the first
    /// checkpoint (the redo point stays where it was until then), rather than written now.
    pub pages_held_for_checkpoint: bool,
    pub cut: Option<CutReport>,
    /// A damaged control slot was passed over (the other, valid one was used).
    pub control_warning: Option<String>,
    pub duration: Duration,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "recovery ({}) from redo LSN {:#x}:",
            self.mode, self.redo_lsn
        )?;
        writeln!(
            f,
            "  replayed {} records ({} bytes), last LSN {:#x}",
            self.records_replayed, self.bytes_replayed, self.last_lsn
        )?;
        if let Some(warning) = &self.control_warning {
            writeln!(f, "  warning: {warning}")?;
        }
        let held = if self.pages_held_for_checkpoint {
            " (in memory, written by the next checkpoint)"
        } else {
            ""
        };
        writeln!(
            f,
            "  restored {} pages{held}; log continues at {:#x}",
            self.pages_restored, self.end_lsn
        )?;
        match &self.cut {
            None => writeln!(f, "  the log ended cleanly"),
            Some(cut) => {
                writeln!(
                    f,
                    "  cut {} bytes at {:#x} ({:?}): {}",
                    cut.bytes, cut.at_lsn, cut.kind, cut.reason
                )?;
                cut.quarantined
                    .iter()
                    .try_for_each(|p| writeln!(f, "  quarantined: {}", p.display()))?;
                match cut.newer_page {
                    Some((page_no, lsn)) => writeln!(
                        f,
                        "  warning: page {page_no} in the data file is at LSN {lsn:#x}, not \
                         before the cut (a checkpoint that was cut off wrote it): the store may \
                         mix two points in time; run verify, and prefer a backup"
                    ),
                    None => Ok(()),
                }
            }
        }
    }
}
