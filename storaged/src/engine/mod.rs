//! The storage engine: checksummed WAL and pages, a B+tree, group commit, recovery, verify.
//!
//! See `storaged/DESIGN.md` for the byte layouts, invariants and crash analysis.

mod archive;
mod backup;
mod btree;
mod buffer;
mod bytes;
mod catalog;
mod checkpoint;
pub mod clock;
mod combine;
mod control;
mod crypt;
#[allow(clippy::module_inception)]
mod engine;
mod error;
mod init;
mod inspect;
pub mod io;
mod layout;
mod locate;
mod open;
mod ops;
mod page;
mod purge;
mod recovery;
mod redo;
mod refusal;
mod restore;
mod sync;
mod txn;
mod types;
mod validate;
mod values;
mod verify;
mod wal;

pub use archive::{ArchiveError, ArchiveOptions, ArchiveStats};
pub use backup::{BackupError, MANIFEST as MANIFEST_FILE, Manifest, ManifestFile, backup_offline};
#[cfg(any(test, feature = "testing"))]
pub use clock::ManualClock;
pub use clock::{Clock, SystemClock};
pub use control::{ControlState, Slot, SlotProblem};
pub use crypt::{Identities, Recipients, generate_identity};
pub use engine::Engine;
pub use error::{Error, OpenError, StorageError, VerifyError, What};
pub use inspect::{InspectReport, RecordSummary, SegmentInfo, inspect, inspect_with};
#[cfg(any(test, feature = "testing"))]
pub use io::SimFs;
pub use io::{IoBackend, IoFile, LatchedIo, ReadOnly, StdFs};
pub use locate::{Holds, LOCATE_MAX_NAMES, PageOwner};
pub use recovery::{CutKind, CutReport, RecoveryReport};
pub use refusal::{Position, Problem, Refusal};
pub use restore::{RestoreError, RestoreReport, RestoreTarget, restore};
pub use types::{
    BatchOp, CheckpointStats, Condition, Document, EngineOptions, EngineStats, List, ListPage,
    RecoveryMode, Scan, ScanPage,
};
pub use validate::{
    ENGINE_DROP_TABLES_PER_COMMIT, ENGINE_MAX_BATCH_BYTES, ENGINE_MAX_BATCH_OPERATIONS,
    ENGINE_MAX_KEY_BYTES, ENGINE_MAX_LIST_NAMES, ENGINE_MAX_NAME_BYTES, ENGINE_MAX_SCAN_BYTES,
    ENGINE_MAX_SCAN_ROWS, ENGINE_MAX_VALUE_BYTES,
};
pub use verify::{BadPage, LEAKED_PAGE, LogFinding, OfflineVerify, VerifyReport, verify_offline};

/// The decoders recovery and reads run, exposed for the fuzz targets (behind the `testing`
/// feature); not a stable API.
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod fuzzing {
    use super::page::PAGE_SIZE;

    /// Decodes bytes as a WAL record at `lsn`, then parses its payload and applies every page
    /// change to a scratch page, exactly as recovery does; must never panic.
    pub fn decode_wal_record(bytes: &[u8], lsn: u64) -> bool {
        let Ok((_, payload)) = super::wal::record::decode(bytes, lsn) else {
            return false;
        };
        apply_payload(payload)
    }

    /// Parses bytes as a commit record's payload and applies it to scratch pages as replay
    /// does (reaches the payload parser without a valid CRC); must never panic.
    pub fn apply_payload(payload: &[u8]) -> bool {
        let Ok(view) = super::redo::PayloadView::parse(payload) else {
            return false;
        };
        let mut page = vec![0u8; PAGE_SIZE];
        view.pages
            .iter()
            .all(|&(_, change)| super::redo::apply_in_place(change, &mut page).is_ok())
    }

    /// Decodes bytes as an on-disk page numbered `page_no`; must never panic.
    pub fn decode_page(bytes: &[u8], page_no: u64) -> bool {
        super::page::unseal(bytes, page_no)
            .and_then(|(image, _)| super::page::Node::decode(&image, page_no))
            .is_ok()
    }

    /// Decodes an image without the checksum (reaches the node decoders with random bytes).
    pub fn decode_page_image(bytes: &[u8]) -> bool {
        super::page::Node::decode(bytes, 1).is_ok()
    }

    /// The valid records of a WAL segment file, each with its LSN (seed inputs for the WAL
    /// target, cut from a real store).
    pub fn segment_records(segment: &[u8]) -> Vec<(u64, Vec<u8>)> {
        use super::wal::segment::SegmentHeader;
        let Ok(header) = SegmentHeader::decode(segment) else {
            return Vec::new();
        };
        super::wal::record::records_of(segment, header.start_lsn)
            .into_iter()
            .map(|record| {
                let at = (record.lsn - header.start_lsn) as usize;
                let len = record.total_len() as usize;
                (record.lsn, segment[at..at + len].to_vec())
            })
            .collect()
    }

    /// Where a store keeps its WAL segments and its data file.
    pub fn store_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
        (super::layout::wal(dir), super::layout::data(dir))
    }
}

#[cfg(test)]
mod tests {
    use super::fuzzing::{apply_payload, decode_wal_record};
    use super::redo::{Change, PageChange, Payload, Run};
    use super::wal::record::{KIND_COMMIT, RecordHeader, encode};

    /// The fuzz entry points reach the parser and the apply step recovery runs: what the engine
    /// writes passes both, and a record at the wrong position does not.
    #[test]
    fn the_fuzz_entry_points_accept_what_the_engine_writes() {
        let payload = Payload {
            summary: "put".into(),
            pages: vec![
                PageChange {
                    page_no: 3,
                    change: Change::Image(vec![1; 300]),
                },
                PageChange {
                    page_no: 3,
                    change: Change::Diff(vec![Run {
                        offset: 8000,
                        bytes: vec![2; 8],
                    }]),
                },
            ],
        }
        .encode();
        assert!(apply_payload(&payload));
        let header = RecordHeader {
            payload_len: payload.len() as u32,
            lsn: 4096,
            prev_lsn: 0,
            durable_before: 0,
            kind: KIND_COMMIT,
            commit_unix_ms: 0,
        };
        let record = encode(&header, &payload);
        assert!(decode_wal_record(&record, 4096));
        assert!(!decode_wal_record(&record, 4104));
        assert!(!apply_payload(&payload[..payload.len() - 1]));
    }
}
