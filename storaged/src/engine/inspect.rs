//! Inspect: a read-only description of a store's files, for operators and the CLI.

use crate::engine::buffer::read_page;
use crate::engine::control::{self, ControlState, Slot};
use crate::engine::error::{OpenError, StorageError};
use crate::engine::io::{IoBackend, ReadOnly, StdFs, read_exact_at};
use crate::engine::layout;
use crate::engine::page::{Node, PAGE_SIZE};
use crate::engine::refusal::Position;
use crate::engine::wal::files::list_segments;
use crate::engine::wal::scan::{EndKind, scan};
use crate::engine::wal::segment::{SEGMENT_HEADER_LEN, SegmentHeader, file_name};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub name: String,
    pub start_lsn: u64,
    /// The header's previous-segment link, or why the header is invalid.
    pub header: Result<(u64, u64), String>,
}

/// One WAL record as `inspect` shows it: where it is and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSummary {
    pub lsn: u64,
    /// The logical summary the commit logged, e.g. `put app/users/alice`.
    pub summary: String,
    pub pages: usize,
    /// Before the redo point: already in the data file (not a point-in-time target).
    pub checkpointed: bool,
}

/// How many of the newest records `inspect` lists (for choosing a point-in-time target).
const RECENT_RECORDS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectReport {
    pub control_slots: [Slot; 2],
    /// A written slot recovery would pass over because it is damaged.
    pub control_warning: Option<String>,
    pub segments: Vec<SegmentInfo>,
    /// Records after the redo point and how the log ends (as recovery would classify it).
    pub wal_records: u64,
    pub wal_last_lsn: u64,
    pub wal_end: String,
    /// The newest records after the redo point, oldest first.
    pub recent_records: Vec<RecordSummary>,
    pub data_file_pages: u64,
    pub pages_by_type: BTreeMap<String, u64>,
    pub unreadable_pages: Vec<u64>,
    pub free_pages: u64,
}

/// Describes the store in `dir` without changing anything.
pub fn inspect(dir: &Path) -> Result<InspectReport, OpenError> {
    inspect_with(&StdFs, dir)
}

/// `inspect` through any I/O backend (tests use the simulated filesystem), made read-only:
/// any attempt to change a file is an error, never a change.
pub fn inspect_with<B: IoBackend + Clone>(io: &B, dir: &Path) -> Result<InspectReport, OpenError> {
    let io = &ReadOnly(io.clone());
    if !io.exists(&layout::control(dir))? {
        return Err(OpenError::NotAStore(dir.to_path_buf()));
    }
    let control_file = io.open(&layout::control(dir), false)?;
    let control_slots = control::read_slots(&*control_file)?;
    let wal_dir = layout::wal(dir);
    let segments = list_segments(io, &wal_dir)?
        .into_iter()
        .map(|s| segment_info(io, &wal_dir, s))
        .collect::<Result<_, _>>()?;
    let mut report = InspectReport {
        control_slots,
        control_warning: None,
        segments,
        wal_records: 0,
        wal_last_lsn: 0,
        wal_end: "control file unreadable".into(),
        recent_records: Vec::new(),
        data_file_pages: 0,
        pages_by_type: BTreeMap::new(),
        unreadable_pages: Vec::new(),
        free_pages: 0,
    };
    if let Ok(loaded) = control::load(&*control_file) {
        report.control_warning = loaded.warning;
        let control = loaded.state;
        let end = scan(io, &wal_dir, &control, None, &mut |_, _| Ok(()))?;
        // The listing starts at the oldest segment still kept, so records a checkpoint (a clean
        // stop's included) already covered are shown too, marked: the log's recent history.
        let from = oldest_kept(&report.segments, &control);
        let mut recent = VecDeque::new();
        scan(io, &wal_dir, &from, None, &mut |lsn, payload| {
            if recent.len() == RECENT_RECORDS {
                recent.pop_front();
            }
            let summary = String::from_utf8_lossy(payload.summary).into_owned();
            recent.push_back(RecordSummary {
                lsn,
                summary,
                pages: payload.pages.len(),
                checkpointed: lsn < control.redo_lsn,
            });
            Ok(())
        })?;
        report.recent_records = recent.into();
        report.wal_records = end.records;
        report.wal_last_lsn = end.last_lsn;
        report.wal_end = match end.kind {
            EndKind::Clean | EndKind::Stopped { .. } => format!("clean end at {:#x}", end.resume),
            EndKind::TornTail { at, len, records } => format!(
                "torn tail of {len} bytes at {} ({records} valid records after the damaged \
                 one): recovery would cut it",
                Position::new(at, control.segment_size)
            ),
            EndKind::Corrupt { at, reason } => format!(
                "corruption at {}: {reason}",
                Position::new(at, control.segment_size)
            ),
        };
    }
    count_pages(io, dir, &mut report)?;
    Ok(report)
}

/// Where the oldest kept segment's records start, as a control state to scan from (the
/// control file's own if that segment's header is unreadable).
fn oldest_kept(segments: &[SegmentInfo], control: &ControlState) -> ControlState {
    match segments.first() {
        Some(SegmentInfo {
            start_lsn,
            header: Ok((_, prev_last)),
            ..
        }) if *start_lsn < control.redo_lsn => ControlState {
            redo_lsn: start_lsn + SEGMENT_HEADER_LEN as u64,
            last_lsn: *prev_last,
            durable_lsn: 0,
            ..*control
        },
        _ => *control,
    }
}

fn segment_info(io: &dyn IoBackend, dir: &Path, start: u64) -> Result<SegmentInfo, StorageError> {
    let file = io.open(&dir.join(file_name(start)), false)?;
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let header = if read_exact_at(&*file, 0, &mut buf)? {
        SegmentHeader::decode(&buf).map(|h| (h.prev_start_lsn, h.prev_last_lsn))
    } else {
        Err("file shorter than a header".into())
    };
    Ok(SegmentInfo {
        name: file_name(start),
        start_lsn: start,
        header,
    })
}

fn count_pages(
    io: &dyn IoBackend,
    dir: &Path,
    report: &mut InspectReport,
) -> Result<(), StorageError> {
    let data = io.open(&layout::data(dir), false)?;
    report.data_file_pages = data.len()? / PAGE_SIZE as u64;
    for page in 0..report.data_file_pages {
        match read_page(&*data, page).and_then(|(image, _)| Node::decode(&image, page)) {
            Ok(node) => {
                report.free_pages += u64::from(matches!(node, Node::Free(_)));
                *report
                    .pages_by_type
                    .entry(format!("{:?}", node.kind()))
                    .or_default() += 1;
            }
            Err(_) => report.unreadable_pages.push(page),
        }
    }
    Ok(())
}

/// Text from the store (the keys in record summaries) as a terminal may show it: control and
/// other non-printable characters escaped (`\u{1b}`, `\n`), so that a key cannot move the
/// cursor or rewrite the operator's screen; `\` and quotes are escaped too, so what is printed
/// reads back as exactly one key.
fn escaped(text: &str) -> std::str::EscapeDebug<'_> {
    text.escape_debug()
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, slot) in self.control_slots.iter().enumerate() {
            match slot {
                Ok(s) => writeln!(
                    f,
                    "control slot {i}: sequence {} redo {:#x} last {:#x} durable {:#x} pages {}",
                    s.sequence, s.redo_lsn, s.last_lsn, s.durable_lsn, s.page_count
                )?,
                Err(e) => writeln!(f, "control slot {i}: {e}")?,
            }
        }
        if let Some(warning) = &self.control_warning {
            writeln!(f, "warning: {warning}")?;
        }
        for s in &self.segments {
            match &s.header {
                Ok((prev, last)) => writeln!(
                    f,
                    "segment {}: prev start {prev:#x}, prev last record {last:#x}",
                    s.name
                )?,
                Err(e) => writeln!(f, "segment {}: bad header ({e})", s.name)?,
            }
        }
        writeln!(
            f,
            "wal: {} records after the redo point, last LSN {:#x}, {}",
            self.wal_records, self.wal_last_lsn, self.wal_end
        )?;
        if !self.recent_records.is_empty() {
            writeln!(
                f,
                "newest {} records (a point-in-time target is one of these LSNs, unless \
                 checkpointed):",
                self.recent_records.len()
            )?;
        }
        for r in &self.recent_records {
            let summary = escaped(&r.summary);
            let mark = if r.checkpointed { ", checkpointed" } else { "" };
            writeln!(f, "  {:#x} {summary} ({} pages{mark})", r.lsn, r.pages)?;
        }
        writeln!(
            f,
            "data file: {} pages {:?}, {} free, unreadable: {:?}",
            self.data_file_pages, self.pages_by_type, self.free_pages, self.unreadable_pages
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::control::SlotProblem;

    #[test]
    fn keys_are_printed_escaped() {
        let report = InspectReport {
            control_slots: [Err(SlotProblem::Empty), Err(SlotProblem::Empty)],
            control_warning: None,
            segments: Vec::new(),
            wal_records: 1,
            wal_last_lsn: 0x80,
            wal_end: "clean end at 0x100".into(),
            recent_records: vec![RecordSummary {
                lsn: 0x80,
                summary: "put app/t/\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{202e}x\\y".into(),
                pages: 1,
                checkpointed: false,
            }],
            data_file_pages: 0,
            pages_by_type: BTreeMap::new(),
            unreadable_pages: Vec::new(),
            free_pages: 0,
        };
        let text = report.to_string();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a control character reached the terminal: {text:?}"
        );
        let expected = r"  0x80 put app/t/\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{202e}x\\y (1 pages)";
        assert!(text.contains(expected), "{text}");
    }
}
