//! The control file: two checksummed 512-byte slots, written alternately.
//!
//! A torn write can only damage the slot being written; the other still holds the previous
//! checkpoint, so a reader takes the valid slot with the highest sequence.
//!
//! ```text
//! slot (512 bytes, at offset 0 or 512; sequence N goes to slot N % 2):
//! 0        4       8        12     16         24            40             48
//! +--------+-------+--------+------+----------+-------------+--------------+
//! | crc32c | magic | format | zero | sequence | instance_id | segment_size |
//! +--------+-------+--------+------+----------+-------------+--------------+
//! 48          56         64           72              80            88 .. 512
//! +-----------+----------+------------+---------------+-------------+----------+
//! | redo_lsn  | last_lsn | page_count | checkpoint_ms | durable_lsn | zero     |
//! +-----------+----------+------------+---------------+-------------+----------+
//! crc32c = crc32c(slot[4..512])
//! ```
//!
//! `durable_lsn` is a lower bound of where the log ends: every log byte below it was durable
//! when the slot was written (a checkpoint, a periodic mark, a clean stop), so a log that ends
//! before it has lost acknowledged commits. 0 in a slot written before the field existed.
//! A slot of all zeros was never written (a new store writes one slot first).

use crate::engine::bytes::{get_u32, get_u64, put_u32, put_u64};
use crate::engine::error::StorageError;
use crate::engine::io::{IoFile, read_exact_at};
use crate::engine::types::valid_segment_size;

pub(crate) const SLOT_LEN: usize = 512;
const MAGIC: u32 = u32::from_le_bytes(*b"PDBC");
/// Format 2 added `durable_lsn`. Format 1 slots (older stores) are read with it 0; slots are
/// written as format 2, which older binaries refuse ("unknown format"): the upgrade is one-way.
const FORMAT: u32 = 2;
const FORMAT_WITHOUT_DURABLE: u32 = 1;

const CRC_AT: usize = 0;
const MAGIC_AT: usize = CRC_AT + 4;
const FORMAT_AT: usize = MAGIC_AT + 4;
const ZERO_AT: usize = FORMAT_AT + 4;
const SEQUENCE_AT: usize = ZERO_AT + 4;
const INSTANCE_AT: usize = SEQUENCE_AT + 8;
const SEG_SIZE_AT: usize = INSTANCE_AT + 16;
const REDO_AT: usize = SEG_SIZE_AT + 8;
const LAST_AT: usize = REDO_AT + 8;
const PAGE_COUNT_AT: usize = LAST_AT + 8;
const TIME_AT: usize = PAGE_COUNT_AT + 8;
const DURABLE_AT: usize = TIME_AT + 8;
const USED: usize = DURABLE_AT + 8;

/// What one checkpoint recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlState {
    pub sequence: u64,
    pub instance_id: [u8; 16],
    pub segment_size: u64,
    /// Replay starts here: every page change before it is in the data file.
    pub redo_lsn: u64,
    /// The last record before `redo_lsn` (0 = none); the next record's `prev_lsn`.
    pub last_lsn: u64,
    pub page_count: u64,
    pub checkpoint_unix_ms: u64,
    /// Every log byte below this was durable when the slot was written (0: not recorded).
    pub durable_lsn: u64,
}

/// Why a slot holds no checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotProblem {
    /// All zeros (or missing): never written. Normal for the second slot of a new store.
    Empty,
    /// Written, but damaged or unreadable.
    Damaged(String),
}

impl std::fmt::Display for SlotProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("empty (never written)"),
            Self::Damaged(why) => write!(f, "damaged: {why}"),
        }
    }
}

/// One slot as read: a checkpoint, or why not.
pub type Slot = Result<ControlState, SlotProblem>;

/// The checkpoint to start from, and a warning when a written slot was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub(crate) state: ControlState,
    /// A damaged slot was passed over: the one written last if its sequence would have been
    /// higher (a torn checkpoint write, or damage), or the older one.
    pub(crate) warning: Option<String>,
}

impl ControlState {
    pub(crate) fn encode(&self) -> [u8; SLOT_LEN] {
        let mut out = [0u8; SLOT_LEN];
        put_u32(&mut out, MAGIC_AT, MAGIC);
        put_u32(&mut out, FORMAT_AT, FORMAT);
        put_u64(&mut out, SEQUENCE_AT, self.sequence);
        out[INSTANCE_AT..INSTANCE_AT + 16].copy_from_slice(&self.instance_id);
        put_u64(&mut out, SEG_SIZE_AT, self.segment_size);
        put_u64(&mut out, REDO_AT, self.redo_lsn);
        put_u64(&mut out, LAST_AT, self.last_lsn);
        put_u64(&mut out, PAGE_COUNT_AT, self.page_count);
        put_u64(&mut out, TIME_AT, self.checkpoint_unix_ms);
        put_u64(&mut out, DURABLE_AT, self.durable_lsn);
        let crc = crc32c::crc32c(&out[MAGIC_AT..]);
        put_u32(&mut out, CRC_AT, crc);
        out
    }

    pub(crate) fn decode(slot: &[u8]) -> Result<ControlState, String> {
        if slot.len() != SLOT_LEN || get_u32(slot, CRC_AT) != crc32c::crc32c(&slot[MAGIC_AT..]) {
            return Err("control slot checksum mismatch".into());
        }
        let format = get_u32(slot, FORMAT_AT);
        let known = get_u32(slot, MAGIC_AT) == MAGIC
            && (format == FORMAT || format == FORMAT_WITHOUT_DURABLE);
        let used = if format == FORMAT { USED } else { DURABLE_AT };
        let zeros = slot[ZERO_AT..SEQUENCE_AT]
            .iter()
            .chain(&slot[used..])
            .all(|&b| b == 0);
        if !known || !zeros {
            return Err("control slot has an unknown magic, format or layout".into());
        }
        let segment_size = get_u64(slot, SEG_SIZE_AT);
        if !valid_segment_size(segment_size) {
            return Err(format!(
                "control slot has an impossible segment size ({segment_size})"
            ));
        }
        let mut instance_id = [0u8; 16];
        instance_id.copy_from_slice(&slot[INSTANCE_AT..INSTANCE_AT + 16]);
        Ok(ControlState {
            sequence: get_u64(slot, SEQUENCE_AT),
            instance_id,
            segment_size,
            redo_lsn: get_u64(slot, REDO_AT),
            last_lsn: get_u64(slot, LAST_AT),
            page_count: get_u64(slot, PAGE_COUNT_AT),
            checkpoint_unix_ms: get_u64(slot, TIME_AT),
            durable_lsn: if format == FORMAT {
                get_u64(slot, DURABLE_AT)
            } else {
                0
            },
        })
    }

    /// A slot as found on disk: all zeros is a slot never written, not a damaged one.
    pub(crate) fn decode_slot(slot: &[u8]) -> Slot {
        if slot.iter().all(|&b| b == 0) {
            return Err(SlotProblem::Empty);
        }
        Self::decode(slot).map_err(SlotProblem::Damaged)
    }
}

/// Both slots as decoded (or why not), for `inspect` and recovery.
pub(crate) fn read_slots(file: &dyn IoFile) -> Result<[Slot; 2], StorageError> {
    let read = |i: u64| -> Result<Slot, StorageError> {
        let mut slot = [0u8; SLOT_LEN];
        if !read_exact_at(file, i * SLOT_LEN as u64, &mut slot)? {
            // A new store's control file may hold only the first slot.
            let len = file.len()?;
            return Ok(if len <= i * SLOT_LEN as u64 {
                Err(SlotProblem::Empty)
            } else {
                Err(SlotProblem::Damaged(
                    "slot cut short (file too short)".into(),
                ))
            });
        }
        Ok(ControlState::decode_slot(&slot))
    };
    Ok([read(0)?, read(1)?])
}

/// The newest valid slot, with a warning if a written slot was damaged.
pub(crate) fn load(file: &dyn IoFile) -> Result<Loaded, StorageError> {
    let [a, b] = read_slots(file)?;
    let warn = |bad: usize, why: &str, used: &ControlState| {
        Some(format!(
            "control slot {bad} is damaged ({why}); using slot {} (sequence {}, redo {:#x})",
            1 - bad,
            used.sequence,
            used.redo_lsn
        ))
    };
    let (state, warning) = match (a, b) {
        (Ok(a), Ok(b)) => (if a.sequence >= b.sequence { a } else { b }, None),
        // Sequence N goes to slot N % 2 and a new store writes 1 first: once a slot holds 2 or
        // more, the other one was written, and zeros there are damage, not a slot never used.
        (Ok(s), Err(SlotProblem::Empty)) if s.sequence >= 2 => (s, warn(1, "zeroed", &s)),
        (Err(SlotProblem::Empty), Ok(s)) if s.sequence >= 2 => (s, warn(0, "zeroed", &s)),
        (Ok(s), Err(SlotProblem::Empty)) | (Err(SlotProblem::Empty), Ok(s)) => (s, None),
        (Ok(s), Err(SlotProblem::Damaged(why))) => (s, warn(1, &why, &s)),
        (Err(SlotProblem::Damaged(why)), Ok(s)) => (s, warn(0, &why, &s)),
        (Err(a), Err(b)) => {
            return Err(StorageError::corrupted(
                None,
                format!("control file: slot 0 {a}; slot 1 {b}"),
            ));
        }
    };
    Ok(Loaded { state, warning })
}

/// Writes `state` with the next sequence number into the other slot, then syncs.
pub(crate) fn store(file: &dyn IoFile, state: &mut ControlState) -> Result<(), StorageError> {
    state.sequence += 1;
    let at = (state.sequence % 2) * SLOT_LEN as u64;
    file.write_at(at, &state.encode())?;
    file.sync_data()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::{IoBackend, SimFs};
    use std::path::Path;

    fn state() -> ControlState {
        ControlState {
            sequence: 0,
            instance_id: [9; 16],
            segment_size: 1 << 24,
            redo_lsn: 128,
            last_lsn: 0,
            page_count: 2,
            checkpoint_unix_ms: 1,
            durable_lsn: 256,
        }
    }

    #[test]
    fn every_single_bit_flip_in_a_slot_is_detected() {
        let slot = state().encode();
        assert_eq!(ControlState::decode(&slot).unwrap(), state());
        for bit in 0..SLOT_LEN * 8 {
            let mut bad = slot;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                ControlState::decode(&bad).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn a_checksummed_slot_with_an_impossible_segment_size_is_refused() {
        for size in [0, 4096, (256 << 10) + 1, 1 << 40] {
            let slot = ControlState {
                segment_size: size,
                ..state()
            }
            .encode();
            let err = ControlState::decode(&slot).unwrap_err();
            assert!(err.contains("impossible segment size"), "{size}: {err}");
        }
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_previous_checkpoint() {
        let fs = SimFs::new();
        let file = fs.open(Path::new("/control"), true).unwrap();
        let mut s = state();
        store(&*file, &mut s).unwrap();
        s.redo_lsn = 4096;
        store(&*file, &mut s).unwrap();
        assert_eq!(load(&*file).unwrap().state.redo_lsn, 4096);
        file.write_at(0, &[0xAB; 100]).unwrap();
        let loaded = load(&*file).unwrap();
        assert_eq!(loaded.state.redo_lsn, 128);
        let warning = loaded
            .warning
            .expect("a damaged slot passed over in silence");
        assert!(
            warning.starts_with("control slot 0 is damaged (control slot checksum mismatch)"),
            "{warning}"
        );
    }

    #[test]
    fn a_format_1_slot_is_read_with_no_durable_end() {
        let mut slot = state().encode();
        put_u32(&mut slot, FORMAT_AT, FORMAT_WITHOUT_DURABLE);
        put_u64(&mut slot, DURABLE_AT, 0);
        let crc = crc32c::crc32c(&slot[MAGIC_AT..]);
        put_u32(&mut slot, CRC_AT, crc);
        let read = ControlState::decode(&slot).unwrap();
        assert_eq!(read.durable_lsn, 0);
        assert_eq!(read.redo_lsn, state().redo_lsn);
    }

    #[test]
    fn a_zeroed_slot_once_both_were_written_is_a_warning() {
        let fs = SimFs::new();
        let file = fs.open(Path::new("/control"), true).unwrap();
        let mut s = state();
        store(&*file, &mut s).unwrap();
        store(&*file, &mut s).unwrap();
        // Sequence 2 is in slot 0; zero slot 1 (sequence 1).
        file.write_at(SLOT_LEN as u64, &[0; SLOT_LEN]).unwrap();
        let loaded = load(&*file).unwrap();
        assert_eq!(loaded.state.sequence, 2);
        let warning = loaded
            .warning
            .expect("a zeroed written slot passed in silence");
        assert!(
            warning.starts_with("control slot 1 is damaged (zeroed)"),
            "{warning}"
        );
    }

    #[test]
    fn a_never_written_slot_is_empty_not_damaged() {
        let fs = SimFs::new();
        let file = fs.open(Path::new("/control"), true).unwrap();
        let mut s = state();
        store(&*file, &mut s).unwrap();
        // Sequence 1 went to slot 1; slot 0 is zeros.
        let [zero, one] = read_slots(&*file).unwrap();
        assert_eq!(zero, Err(SlotProblem::Empty));
        assert_eq!(one.unwrap().durable_lsn, 256);
        assert_eq!(load(&*file).unwrap().warning, None);
        assert_eq!(SlotProblem::Empty.to_string(), "empty (never written)");
    }
}
