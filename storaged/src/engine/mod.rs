//! The storage engine: checksummed WAL and pages, a B+tree, group commit, recovery, verify.
//!
//! See `storaged/DESIGN.md` for the byte layouts, invariants and crash analysis.

mod btree;
mod buffer;
mod bytes;
mod catalog;
mod checkpoint;
mod combine;
mod control;
#[allow(clippy::module_inception)]
mod engine;
mod error;
mod init;
mod inspect;
pub mod io;
mod layout;
mod open;
mod ops;
mod page;
mod purge;
mod recovery;
mod redo;
mod txn;
mod types;
mod validate;
mod values;
mod verify;
mod wal;

pub use control::ControlState;
pub use engine::Engine;
pub use error::{Error, OpenError, StorageError, What};
pub use inspect::{InspectReport, RecordSummary, SegmentInfo, inspect, inspect_with};
pub use io::{IoBackend, IoFile, LatchedIo, ReadOnly, SimFs, StdFs};
pub use ops::{MAX_SCAN_BYTES, MAX_SCAN_LIMIT};
pub use recovery::{CutKind, CutReport, Problem, RecoveryReport, Refusal};
pub use types::{
    BatchOp, CheckpointStats, Condition, Document, EngineOptions, EngineStats, RecoveryMode, Scan,
    ScanPage,
};
pub use verify::{BadPage, VerifyReport, verify_offline};

/// Decoders exposed for the fuzz targets only; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes bytes as a WAL record at `lsn` and its payload; must never panic.
    pub fn decode_wal_record(bytes: &[u8], lsn: u64) -> bool {
        match super::wal::record::decode(bytes, lsn) {
            Ok((_, payload)) => super::redo::Payload::decode(payload).is_ok(),
            Err(_) => false,
        }
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
}
