//! Reading the log for recovery: validate every record and classify where the log ends.
//!
//! The first position that does not hold a valid record is classified:
//! - only zeros up to the end of the segment: a clean end (of this segment, or of the log);
//! - inside a sealed segment (one with a successor), or followed later in the active segment by
//!   a valid record written after this position was durable (its `durable_before` is past it):
//!   corruption, since a crash cannot produce either;
//! - otherwise, in the active segment: a torn tail, the unacknowledged remains of a crash. Valid
//!   records may follow it if they were in the same unsynced write: a disk may persist that
//!   write's sectors in any order.
//!
//! Then the control file's `durable_lsn` (a lower bound of the durable end, recorded at each
//! checkpoint, periodically, and at a clean stop) is checked: a log that ends, or tears,
//! before it has lost acknowledged commits, which is corruption too. So is a segment shorter
//! than a segment (segments are created whole, then renamed into place).

use crate::engine::control::ControlState;
use crate::engine::error::StorageError;
use crate::engine::io::{IoBackend, read_exact_at};
use crate::engine::redo::PayloadView;
use crate::engine::wal::files::list_segments;
use crate::engine::wal::record::{self, Invalid, RECORD_HEADER_LEN};
use crate::engine::wal::segment::{
    NO_PREVIOUS, SEGMENT_HEADER_LEN, SegmentHeader, file_name, segment_of,
};
use std::path::Path;

/// How the log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndKind {
    Clean,
    /// Bytes `[at, at + len)` of the active segment are the remains of an unfinished write;
    /// `records` of them are records valid on their own (from the same unsynced write).
    TornTail {
        at: u64,
        len: u64,
        records: u64,
    },
    Corrupt {
        at: u64,
        reason: String,
    },
    /// Point-in-time recovery stopped before the record at `at`.
    Stopped {
        at: u64,
    },
}

/// The result of a scan: how it ended and where the log continues.
#[derive(Debug, Clone)]
pub(crate) struct LogEnd {
    pub(crate) kind: EndKind,
    /// Where the next record would go if the log were cut at the end of the valid prefix.
    pub(crate) resume: u64,
    pub(crate) last_lsn: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    /// Segment start LSNs from the redo point on, as found.
    pub(crate) segments: Vec<u64>,
}

/// Applies each valid record (LSN, payload) in order.
pub(crate) type Apply<'a> = dyn FnMut(u64, &PayloadView<'_>) -> Result<(), StorageError> + 'a;

struct Scanner<'a> {
    io: &'a dyn IoBackend,
    dir: &'a Path,
    control: &'a ControlState,
    until: Option<u64>,
    end: LogEnd,
}

/// Scans from the control file's redo point, applying records up to `until` (if given).
pub(crate) fn scan(
    io: &dyn IoBackend,
    dir: &Path,
    control: &ControlState,
    until: Option<u64>,
    apply: &mut Apply<'_>,
) -> Result<LogEnd, StorageError> {
    let first = segment_of(control.redo_lsn, control.segment_size);
    let segments: Vec<u64> = list_segments(io, dir)?
        .into_iter()
        .filter(|&s| s >= first)
        .collect();
    let end = LogEnd {
        kind: EndKind::Clean,
        resume: control.redo_lsn,
        last_lsn: control.last_lsn,
        records: 0,
        bytes: 0,
        segments: segments.clone(),
    };
    let mut scanner = Scanner {
        io,
        dir,
        control,
        until,
        end,
    };
    scanner.run(first, &segments, apply)?;
    scanner.check_durable_end();
    Ok(scanner.end)
}

impl Scanner<'_> {
    fn run(
        &mut self,
        first: u64,
        segments: &[u64],
        apply: &mut Apply<'_>,
    ) -> Result<(), StorageError> {
        let mut prev_start = None;
        for (i, &start) in segments.iter().enumerate() {
            let expected =
                prev_start.map_or(first, |p: u64| p.saturating_add(self.control.segment_size));
            if start != expected {
                return self.corrupt(
                    expected,
                    format!("WAL segment {} is missing", file_name(expected)),
                );
            }
            let data = match self.read_segment(start, prev_start)? {
                Ok(data) => data,
                Err(reason) => return self.corrupt(start, reason),
            };
            if !self.scan_segment(start, &data, i + 1 == segments.len(), apply)? {
                return Ok(());
            }
            prev_start = Some(start);
        }
        if prev_start.is_none() {
            let name = file_name(first);
            return self.corrupt(
                first,
                format!("WAL segment {name} holding the redo point is missing"),
            );
        }
        Ok(())
    }

    /// A log that ends (or tears) below the durable end the control file recorded has lost
    /// acknowledged commits: no crash removes durable bytes.
    fn check_durable_end(&mut self) {
        let durable = self.control.durable_lsn;
        let (at, how) = match self.end.kind {
            EndKind::Clean => (self.end.resume, "the log ends"),
            EndKind::TornTail { at, .. } => (at, "the log has a damaged record"),
            EndKind::Corrupt { .. } | EndKind::Stopped { .. } => return,
        };
        if at < durable {
            let reason = format!(
                "{how} at {at:#x}, below {durable:#x}, where the control file records the log \
                 durable: acknowledged commits in [{at:#x}, {durable:#x}) are missing or damaged"
            );
            self.end.kind = EndKind::Corrupt { at, reason };
        }
    }

    fn corrupt(&mut self, at: u64, reason: String) -> Result<(), StorageError> {
        self.end.kind = EndKind::Corrupt { at, reason };
        Ok(())
    }

    /// The segment's bytes if its header is valid and links to its predecessor.
    fn read_segment(
        &self,
        start: u64,
        prev: Option<u64>,
    ) -> Result<Result<Vec<u8>, String>, StorageError> {
        let file = self.io.open(&self.dir.join(file_name(start)), false)?;
        // A short segment is read as far as it goes: the records before its end are counted
        // and the report names the offset where it stops (`end_segment`).
        let len = file.len()?.min(self.control.segment_size);
        let mut data = vec![0u8; len as usize];
        if !read_exact_at(&*file, 0, &mut data)? || data.len() < SEGMENT_HEADER_LEN {
            return Ok(Err(format!(
                "WAL segment {} is cut short: {len} of {} bytes, not even its header",
                file_name(start),
                self.control.segment_size
            )));
        }
        let header = match SegmentHeader::decode(&data) {
            Ok(h) => h,
            Err(e) => return Ok(Err(format!("WAL segment {}: {e}", file_name(start)))),
        };
        Ok(self.check_header(&header, start, prev).map(|()| data))
    }

    fn check_header(&self, h: &SegmentHeader, start: u64, prev: Option<u64>) -> Result<(), String> {
        let name = file_name(start);
        if h.instance_id != self.control.instance_id {
            return Err(format!("WAL segment {name} belongs to another instance"));
        }
        if h.start_lsn != start || h.segment_size != self.control.segment_size {
            return Err(format!(
                "WAL segment {name} has a header for another position or size"
            ));
        }
        if let Some(prev) = prev {
            if h.prev_start_lsn != prev || h.prev_last_lsn != self.end.last_lsn {
                return Err(format!(
                    "WAL segment {name} does not link to the records before it"
                ));
            }
        } else if h.prev_start_lsn == NO_PREVIOUS && start != 0 {
            return Err(format!("WAL segment {name} claims to be the first segment"));
        }
        Ok(())
    }

    /// Scans one segment; false when the log ends (or stops) inside it.
    fn scan_segment(
        &mut self,
        start: u64,
        data: &[u8],
        is_last: bool,
        apply: &mut Apply<'_>,
    ) -> Result<bool, StorageError> {
        let mut offset = (self.end.resume.max(start + SEGMENT_HEADER_LEN as u64) - start) as usize;
        self.end.resume = start + offset as u64;
        while offset + RECORD_HEADER_LEN <= data.len() {
            let lsn = start + offset as u64;
            if self.until.is_some_and(|until| lsn > until) {
                self.end.kind = EndKind::Stopped { at: lsn };
                return Ok(false);
            }
            match self.decode(&data[offset..], lsn) {
                Ok((len, payload)) => {
                    apply(lsn, &payload)?;
                    self.accept(lsn, len);
                    offset += len as usize;
                }
                Err(reason) => return Ok(self.end_segment(start, data, offset, is_last, reason)),
            }
        }
        Ok(self.end_segment(start, data, offset, is_last, Invalid::Zero))
    }

    /// Where a segment's records end: a cut-short segment is corruption at that offset;
    /// otherwise `classify` decides.
    fn end_segment(
        &mut self,
        start: u64,
        data: &[u8],
        offset: usize,
        is_last: bool,
        why: Invalid,
    ) -> bool {
        let size = self.control.segment_size;
        if (data.len() as u64) < size {
            self.end.kind = EndKind::Corrupt {
                at: start + offset as u64,
                reason: format!(
                    "WAL segment {} is cut short: {} of {size} bytes, its records stop at \
                     offset {offset}",
                    file_name(start),
                    data.len()
                ),
            };
            return false;
        }
        self.classify(start, data, offset, is_last, why)
    }

    fn decode<'d>(&self, buf: &'d [u8], lsn: u64) -> Result<(u64, PayloadView<'d>), Invalid> {
        let (header, payload) = record::decode(buf, lsn)?;
        if header.prev_lsn != self.end.last_lsn {
            return Err(Invalid::Damaged(
                "record's previous-LSN link is broken".into(),
            ));
        }
        let payload = PayloadView::parse(payload)
            .map_err(|e| Invalid::Damaged(format!("record payload is malformed: {}", e.0)))?;
        Ok((header.total_len(), payload))
    }

    fn accept(&mut self, lsn: u64, len: u64) {
        self.end.last_lsn = lsn;
        self.end.resume = lsn + len;
        self.end.records += 1;
        self.end.bytes += len;
    }

    /// Decides what the first invalid position of a segment means; true = continue.
    fn classify(
        &mut self,
        start: u64,
        data: &[u8],
        offset: usize,
        is_last: bool,
        why: Invalid,
    ) -> bool {
        let at = start + offset as u64;
        let rest = data.get(offset..).unwrap_or_default();
        let nonzero_end = last_nonzero(rest).map(|p| offset + p + 1);
        let reason = match why {
            Invalid::Zero => "bytes that are not a record".to_string(),
            Invalid::Damaged(reason) => reason,
        };
        self.end.kind = match nonzero_end {
            None if is_last => EndKind::Clean,
            None => return true,
            Some(_) if !is_last => EndKind::Corrupt {
                at,
                reason: format!("{reason}, inside a sealed segment"),
            },
            Some(end) => match later_proof_of_durability(start, data, offset) {
                Some(q) => EndKind::Corrupt {
                    at,
                    reason: format!(
                        "{reason}; the valid record at {q:#x} was written after this position was durable"
                    ),
                },
                None => EndKind::TornTail {
                    at,
                    len: (end - offset) as u64,
                    records: records_after(start, data, offset).count() as u64,
                },
            },
        };
        false
    }
}

/// The index of the last nonzero byte. The tail of the active segment is mostly zeros (up to
/// the whole segment), so this compares wide chunks rather than single bytes.
pub(crate) fn last_nonzero(buf: &[u8]) -> Option<usize> {
    const CHUNK: usize = 256;
    let mut end = buf.len();
    let head = end % CHUNK;
    for chunk in buf[head..].rchunks_exact(CHUNK) {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            break;
        }
        end -= CHUNK;
    }
    buf[..end].iter().rposition(|&b| b != 0)
}

/// The records after `offset` that are valid on their own (own LSN, CRC), each as (LSN,
/// `durable_before`). A valid record is stepped over whole: what lies inside it is its payload
/// (document values among it), never a record of its own, so a value shaped like a record
/// cannot pass for one.
fn records_after(start: u64, data: &[u8], offset: usize) -> impl Iterator<Item = (u64, u64)> + '_ {
    let mut q = offset + record::ALIGN as usize;
    std::iter::from_fn(move || {
        while q + RECORD_HEADER_LEN <= data.len() {
            let lsn = start + q as u64;
            match record::decode(&data[q..], lsn) {
                Ok((h, _)) => {
                    q += record::record_len(h.payload_len as usize) as usize;
                    return Some((lsn, h.durable_before));
                }
                Err(_) => q += record::ALIGN as usize,
            }
        }
        None
    })
}

/// The first later record that says everything up to and including `offset` was durable
/// before it was written.
fn later_proof_of_durability(start: u64, data: &[u8], offset: usize) -> Option<u64> {
    let at = start + offset as u64;
    records_after(start, data, offset)
        .find(|&(_, durable_before)| durable_before > at)
        .map(|(lsn, _)| lsn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::SimFs;
    use crate::engine::redo::Payload;
    use crate::engine::wal::record::{KIND_COMMIT, RecordHeader, encode};

    const SIZE: u64 = 64 << 10;
    const DIR: &str = "/wal";

    fn control() -> ControlState {
        ControlState {
            sequence: 1,
            instance_id: [1; 16],
            segment_size: SIZE,
            redo_lsn: SEGMENT_HEADER_LEN as u64,
            last_lsn: 0,
            page_count: 2,
            checkpoint_unix_ms: 0,
            durable_lsn: 0,
        }
    }

    /// Three records; the third says everything before `third_durable_before(lsns)` was durable
    /// when it was written. Then a byte of the second record's payload is damaged.
    fn log_with_damaged_second(third_durable_before: impl Fn(&[u64]) -> u64) -> (SimFs, Vec<u64>) {
        let fs = SimFs::new();
        let file = fs.open(&Path::new(DIR).join(file_name(0)), true).unwrap();
        let header = SegmentHeader {
            segment_size: SIZE,
            instance_id: [1; 16],
            start_lsn: 0,
            prev_start_lsn: NO_PREVIOUS,
            prev_last_lsn: 0,
        };
        file.write_at(0, &header.encode()).unwrap();
        file.set_len(SIZE).unwrap();
        let payload = Payload {
            summary: "x".into(),
            pages: Vec::new(),
        }
        .encode();
        let mut lsns = vec![SEGMENT_HEADER_LEN as u64];
        for i in 0..3 {
            lsns.push(lsns[i] + record::record_len(payload.len()));
        }
        for i in 0..3 {
            let durable_before = if i == 2 {
                third_durable_before(&lsns)
            } else {
                lsns[i]
            };
            let prev_lsn = if i == 0 { 0 } else { lsns[i - 1] };
            let h = RecordHeader {
                payload_len: 0,
                lsn: lsns[i],
                prev_lsn,
                durable_before,
                kind: KIND_COMMIT,
                commit_unix_ms: 0,
            };
            file.write_at(lsns[i], &encode(&h, &payload)).unwrap();
        }
        file.write_at(lsns[1] + RECORD_HEADER_LEN as u64, &[0xFF])
            .unwrap();
        (fs, lsns)
    }

    #[test]
    fn last_nonzero_finds_the_last_nonzero_byte() {
        for len in [0usize, 1, 255, 256, 257, 1000, 4096] {
            for at in [None, Some(0), Some(len / 2), len.checked_sub(1)] {
                let mut buf = vec![0u8; len];
                if let Some(Some(i)) = at.map(|a| (a < len).then_some(a)) {
                    buf[i] = 1;
                }
                assert_eq!(last_nonzero(&buf), buf.iter().rposition(|&b| b != 0));
            }
        }
    }

    fn end_of(fs: &SimFs) -> EndKind {
        scan(fs, Path::new(DIR), &control(), None, &mut |_, _| Ok(()))
            .unwrap()
            .kind
    }

    #[test]
    fn a_damaged_record_followed_by_one_from_the_same_unsynced_write_is_a_torn_tail() {
        let (fs, lsns) = log_with_damaged_second(|lsns| lsns[1]);
        assert!(matches!(end_of(&fs), EndKind::TornTail { at, .. } if at == lsns[1]));
    }

    #[test]
    fn a_record_shaped_value_inside_a_valid_record_is_no_proof() {
        // The damaged second record, then a valid record from the same unsynced write whose
        // payload (a document value, say) holds a well-formed record at its own position
        // claiming everything was durable: still a torn tail.
        let (fs, lsns) = log_with_damaged_second(|lsns| lsns[1]);
        let third = lsns[2];
        let payload_at = third + RECORD_HEADER_LEN as u64;
        let forged_at = payload_at.next_multiple_of(record::ALIGN) + record::ALIGN;
        let forged = encode(
            &RecordHeader {
                payload_len: 0,
                lsn: forged_at,
                prev_lsn: lsns[1],
                durable_before: u64::MAX / 2,
                kind: KIND_COMMIT,
                commit_unix_ms: 0,
            },
            b"forged",
        );
        let mut value = vec![0x11; (forged_at - payload_at) as usize];
        value.extend_from_slice(&forged);
        value.extend_from_slice(&[0x22; 5]);
        let carrier = RecordHeader {
            payload_len: 0,
            lsn: third,
            prev_lsn: lsns[1],
            durable_before: lsns[1],
            kind: KIND_COMMIT,
            commit_unix_ms: 0,
        };
        let file = fs.open(&Path::new(DIR).join(file_name(0)), false).unwrap();
        file.write_at(third, &encode(&carrier, &value)).unwrap();
        assert!(matches!(end_of(&fs), EndKind::TornTail { at, .. } if at == lsns[1]));
    }

    #[test]
    fn a_damaged_record_followed_by_one_written_after_it_was_durable_is_corruption() {
        let (fs, lsns) = log_with_damaged_second(|lsns| lsns[2]);
        assert!(matches!(end_of(&fs), EndKind::Corrupt { at, .. } if at == lsns[1]));
    }
}
