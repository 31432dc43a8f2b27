//! Recovery on open: read the control file, scan and replay the WAL from the redo point,
//! classify how the log ends, cut what the mode allows (after quarantining it), or refuse.

mod quarantine;
mod replay;
mod report;

pub use report::{CutKind, CutReport, RecoveryReport};

use crate::engine::buffer::read_page;
use crate::engine::clock::Clock;
use crate::engine::control::{self, ControlState, Loaded};
use crate::engine::error::{OpenError, StorageError};
use crate::engine::io::{IoBackend, IoFile};
use crate::engine::layout;
use crate::engine::page::{Node, PAGE_SIZE};
use crate::engine::refusal::{Position, Problem, Refusal};
use crate::engine::types::RecoveryMode;
use crate::engine::wal::WalStart;
use crate::engine::wal::files::{create_segment, remove_leftovers, retire_below};
use crate::engine::wal::scan::{EndKind, LogEnd, scan};
use crate::engine::wal::segment::{NO_PREVIOUS, SegmentHeader, file_name, segment_of};
use replay::Replay;
use std::path::Path;
use std::sync::Arc;

/// Everything the engine needs to start after recovery.
pub(crate) struct Recovered {
    pub(crate) control: ControlState,
    pub(crate) control_file: Arc<dyn IoFile>,
    pub(crate) data_file: Arc<dyn IoFile>,
    pub(crate) wal: WalStart,
    pub(crate) report: RecoveryReport,
    /// Replayed pages for the buffer pool to hold dirty (empty if they were written).
    pub(crate) replayed: Vec<(u64, Vec<u8>, u64)>,
}

/// What recovery found, and what the mode allows it to do, decided without changing anything:
/// `recover` acts on it, an offline verify only reports it.
pub(crate) struct Plan {
    pub(crate) control: ControlState,
    /// A damaged control slot recovery passed over.
    pub(crate) control_warning: Option<String>,
    pub(crate) control_file: Arc<dyn IoFile>,
    pub(crate) data_file: Arc<dyn IoFile>,
    /// The valid records from the redo point, applied in memory.
    pub(crate) replay: Replay,
    pub(crate) end: LogEnd,
    /// Nothing to do, a cut (kind, position, reason), or a refusal.
    pub(crate) decision: Result<Option<(CutKind, u64, String)>, Refusal>,
    /// Offline modes: the data file's newest page (number, LSN).
    newest: Option<(u64, u64)>,
}

/// What the mode allows for how the log ended: nothing to do, a cut, or a refusal.
fn decide(
    mode: RecoveryMode,
    end: &LogEnd,
    control: &ControlState,
) -> Result<Option<(CutKind, u64, String)>, Refusal> {
    let refuse = |problem, at, reason: &str| Refusal {
        mode,
        problem,
        at: Some(Position::new(at, control.segment_size)),
        reason: reason.to_string(),
        redo_lsn: control.redo_lsn,
        valid_records: end.records,
        last_valid_lsn: end.last_lsn,
    };
    match (&end.kind, mode) {
        (EndKind::Clean, _) => Ok(None),
        (EndKind::Stopped { at }, _) => Ok(Some((
            CutKind::PointInTime,
            *at,
            "after the point-in-time target".into(),
        ))),
        (EndKind::TornTail { at, .. }, RecoveryMode::Strict) => Err(refuse(
            Problem::TornTail,
            *at,
            "the log ends in a torn record",
        )),
        (EndKind::TornTail { at, .. }, _) => Ok(Some((
            CutKind::TornTail,
            *at,
            "torn tail of the active segment".into(),
        ))),
        (EndKind::Corrupt { at, reason }, RecoveryMode::Salvage) => {
            Ok(Some((CutKind::Corruption, *at, reason.clone())))
        }
        (EndKind::Corrupt { at, reason }, _) => Err(refuse(Problem::Corruption, *at, reason)),
    }
}

fn refused(r: Refusal) -> OpenError {
    OpenError::Refused(Box::new(r))
}

fn load_control(file: &dyn IoFile, mode: RecoveryMode) -> Result<Loaded, OpenError> {
    control::load(file).map_err(|e| match e {
        StorageError::Corrupted { detail, .. } => refused(Refusal {
            mode,
            problem: Problem::ControlFile,
            at: None,
            reason: detail,
            redo_lsn: 0,
            valid_records: 0,
            last_valid_lsn: 0,
        }),
        other => OpenError::Storage(other),
    })
}

/// Reads the control file and scans the log from the redo point, replaying into memory, and
/// decides what `mode` allows. Reads only: it runs on a read-only backend for `verify`.
pub(crate) fn plan(io: &dyn IoBackend, dir: &Path, mode: RecoveryMode) -> Result<Plan, OpenError> {
    let control_file = io.open(&layout::control(dir), false)?;
    let loaded = load_control(&*control_file, mode)?;
    if let Some(warning) = &loaded.warning {
        tracing::warn!(%warning, "control file");
    }
    let control = loaded.state;
    let data_file = io.open(&layout::data(dir), false)?;
    // A checkpoint cut off after writing pages but before its control slot leaves pages newer
    // than the control file says; replay cannot roll back those changed only after the point
    // recovery stops at. Point-in-time refuses such a target; salvage warns in its report.
    let newest = match mode {
        RecoveryMode::PointInTime { .. } | RecoveryMode::Salvage => newest_page(&*data_file)?,
        _ => None,
    };
    let until = point_in_time_target(mode, &control, newest)?;
    let mut replay = Replay::new(data_file.clone());
    let end = scan(io, &layout::wal(dir), &control, until, &mut |lsn, p| {
        replay.apply(lsn, p)
    })?;
    let decision = decide(mode, &end, &control);
    Ok(Plan {
        control,
        control_warning: loaded.warning,
        control_file,
        data_file,
        replay,
        end,
        decision,
        newest,
    })
}

/// Recovers the store in `dir`. Up to `hold_pages` replayed pages are handed back for the
/// buffer pool instead of being written (see §6 of DESIGN.md); more than that are written.
pub(crate) fn recover(
    io: &dyn IoBackend,
    dir: &Path,
    mode: RecoveryMode,
    hold_pages: usize,
    clock: &dyn Clock,
) -> Result<Recovered, OpenError> {
    let started = clock.now();
    let Plan {
        mut control,
        control_warning,
        control_file,
        data_file,
        replay,
        end,
        decision,
        newest,
    } = plan(io, dir, mode)?;
    let decided = decision.map_err(refused)?;
    let wal_dir = layout::wal(dir);
    remove_leftovers(io, &wal_dir)?;
    let cut = match decided {
        Some(decided) => {
            if decided.0 == CutKind::PointInTime && control.durable_lsn > end.resume {
                // The records after the target are valid: the durable end is lowered before
                // they are cut, so a crash in between only means the cut is redone.
                control.durable_lsn = end.resume;
                control::store(&*control_file, &mut control)?;
            }
            let at = decided.1;
            let mut cut = cut_report(io, dir, &end, &control, decided, clock.unix_ms())?;
            cut.newer_page = newest.filter(|&(_, lsn)| lsn >= at);
            Some(cut)
        }
        None => None,
    };
    let active = sync_active_segment(io, &wal_dir, &end, &control)?;
    let redo_lsn = control.redo_lsn;
    let pages_restored = replay.len();
    let hold = pages_restored > 0 && pages_restored <= hold_pages;
    let replayed = if hold {
        // The log from the redo point stays until the first checkpoint writes these pages:
        // a crash before it replays the same records again.
        if cut.is_some() && control.durable_lsn > end.resume {
            // The log now ends at the cut, below the durable end recorded (salvage): recorded
            // only after the cut, so a crash before this leaves a refusal, not a damaged log
            // passed off as a torn tail.
            control.durable_lsn = end.resume;
            control::store(&*control_file, &mut control)?;
        }
        replay.into_pages()
    } else {
        replay.write_all()?;
        if end.records > 0 || cut.is_some() {
            new_checkpoint(io, dir, &*control_file, &*data_file, &mut control, &end)?;
        }
        Vec::new()
    };
    let report = RecoveryReport {
        mode,
        redo_lsn,
        records_replayed: end.records,
        bytes_replayed: end.bytes,
        last_lsn: end.last_lsn,
        end_lsn: end.resume,
        pages_restored,
        pages_held_for_checkpoint: hold,
        cut,
        control_warning,
        duration: clock.since(started),
    };
    let wal = WalStart {
        tail: end.resume,
        last_lsn: end.last_lsn,
        active,
    };
    Ok(Recovered {
        control,
        control_file,
        data_file,
        wal,
        report,
        replayed,
    })
}

/// The LSN to stop after, for point-in-time recovery; it cannot precede the data file: neither
/// the last checkpoint nor `newest`, the data file's newest page (number, LSN).
fn point_in_time_target(
    mode: RecoveryMode,
    control: &ControlState,
    newest: Option<(u64, u64)>,
) -> Result<Option<u64>, OpenError> {
    let RecoveryMode::PointInTime { until_lsn } = mode else {
        return Ok(None);
    };
    if until_lsn < control.last_lsn {
        return Err(OpenError::InvalidOptions(format!(
            "point-in-time target {until_lsn:#x} is before the last checkpoint ({:#x})",
            control.last_lsn
        )));
    }
    if let Some((page_no, lsn)) = newest.filter(|&(_, lsn)| lsn > until_lsn) {
        return Err(OpenError::InvalidOptions(format!(
            "point-in-time target {until_lsn:#x} is before changes the data file already holds \
             (page {page_no} is at {lsn:#x}, written by a checkpoint that was cut off); \
             choose a target at {lsn:#x} or later"
        )));
    }
    Ok(Some(until_lsn))
}

/// The page of the data file with the newest LSN, and that LSN (unreadable pages are left to
/// replay and verify, as in any recovery). Reads the whole file: only the offline modes ask.
fn newest_page(data_file: &dyn IoFile) -> Result<Option<(u64, u64)>, StorageError> {
    let pages = data_file.len()? / PAGE_SIZE as u64;
    let mut newest = None;
    for page_no in 0..pages {
        if let Ok((_, lsn)) = read_page(data_file, page_no)
            && newest.is_none_or(|(_, n)| lsn > n)
        {
            newest = Some((page_no, lsn));
        }
    }
    Ok(newest)
}

/// Opens the segment the log continues in and syncs it: the records just replayed may be only
/// in the OS cache (after a process crash), and pages built from them are about to be written.
/// Salvage may have quarantined that very segment (its header was bad): it starts afresh.
fn sync_active_segment(
    io: &dyn IoBackend,
    wal_dir: &Path,
    end: &LogEnd,
    control: &ControlState,
) -> Result<Arc<dyn IoFile>, StorageError> {
    let start = segment_of(end.resume, control.segment_size);
    let path = wal_dir.join(file_name(start));
    if !io.exists(&path)? {
        return create_segment(io, wal_dir, &fresh_header(start, end, control));
    }
    let active = io.open(&path, false)?;
    active.sync_data()?;
    Ok(active)
}

fn fresh_header(start: u64, end: &LogEnd, control: &ControlState) -> SegmentHeader {
    SegmentHeader {
        segment_size: control.segment_size,
        instance_id: control.instance_id,
        start_lsn: start,
        prev_start_lsn: start
            .checked_sub(control.segment_size)
            .unwrap_or(NO_PREVIOUS),
        prev_last_lsn: end.last_lsn,
    }
}

fn cut_report(
    io: &dyn IoBackend,
    dir: &Path,
    end: &LogEnd,
    control: &ControlState,
    (kind, at, reason): (CutKind, u64, String),
    stamp_ms: u64,
) -> Result<CutReport, StorageError> {
    let cut = quarantine::cut(io, dir, &end.segments, control.segment_size, at, stamp_ms)?;
    tracing::warn!(?kind, at, bytes = cut.bytes, %reason, "recovery cut the log");
    Ok(CutReport {
        kind,
        at_lsn: at,
        bytes: cut.bytes,
        reason,
        quarantined: cut.files,
        newer_page: None,
    })
}

/// Records that the replayed pages are in the data file: the redo point moves to the log end.
fn new_checkpoint(
    io: &dyn IoBackend,
    dir: &Path,
    control_file: &dyn IoFile,
    data_file: &dyn IoFile,
    control: &mut ControlState,
    end: &LogEnd,
) -> Result<(), StorageError> {
    let (image, _) = read_page(data_file, 0)?;
    if let Node::Meta(meta) = Node::decode(&image, 0)? {
        control.page_count = meta.page_count;
    }
    control.redo_lsn = end.resume;
    control.last_lsn = end.last_lsn;
    // The whole log below the redo point is durable (and no longer needed); after a cut this
    // is lower than what was recorded before.
    control.durable_lsn = end.resume;
    control::store(control_file, control)?;
    retire_below(
        io,
        &layout::wal(dir),
        control.redo_lsn,
        control.segment_size,
    )?;
    Ok(())
}
