//! WAL segment headers and file names.
//!
//! ```text
//! 0        4       8        12           16             24            40          48
//! +--------+-------+--------+------------+--------------+-------------+-----------+
//! | crc32c | magic | format | header_len | segment_size | instance_id | start_lsn |
//! +--------+-------+--------+------------+--------------+-------------+-----------+
//! 48                 56                  64 .. 128
//! +------------------+-------------------+----------+
//! | prev_start_lsn   | prev_last_lsn     | zero     |   first record at start_lsn + 128
//! +------------------+-------------------+----------+
//! crc32c = crc32c(header[4..128]);  prev_start_lsn = u64::MAX for the first segment
//! ```

use crate::engine::bytes::{get_u32, get_u64, put_u32, put_u64};

const MAGIC: u32 = u32::from_le_bytes(*b"PDBW");
/// Format 2 segments hold records with commit times (record kind 2); format 1 segments, from
/// before, are still read (their records carry none). New segments are always format 2, so a
/// version that predates it refuses them by their format rather than misreading their records.
const FORMAT: u32 = 2;
const FORMAT_UNTIMED: u32 = 1;

const CRC_AT: usize = 0;
const MAGIC_AT: usize = CRC_AT + 4;
const FORMAT_AT: usize = MAGIC_AT + 4;
const HEADER_LEN_AT: usize = FORMAT_AT + 4;
const SEG_SIZE_AT: usize = HEADER_LEN_AT + 4;
const INSTANCE_AT: usize = SEG_SIZE_AT + 8;
const START_AT: usize = INSTANCE_AT + 16;
const PREV_START_AT: usize = START_AT + 8;
const PREV_LAST_AT: usize = PREV_START_AT + 8;
const USED: usize = PREV_LAST_AT + 8;
/// Bytes reserved for the header; records start after it.
pub(crate) const SEGMENT_HEADER_LEN: usize = 128;

pub(crate) const NO_PREVIOUS: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) segment_size: u64,
    pub(crate) instance_id: [u8; 16],
    pub(crate) start_lsn: u64,
    pub(crate) prev_start_lsn: u64,
    pub(crate) prev_last_lsn: u64,
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        put_u32(&mut out, MAGIC_AT, MAGIC);
        put_u32(&mut out, FORMAT_AT, FORMAT);
        put_u32(&mut out, HEADER_LEN_AT, SEGMENT_HEADER_LEN as u32);
        put_u64(&mut out, SEG_SIZE_AT, self.segment_size);
        out[INSTANCE_AT..INSTANCE_AT + 16].copy_from_slice(&self.instance_id);
        put_u64(&mut out, START_AT, self.start_lsn);
        put_u64(&mut out, PREV_START_AT, self.prev_start_lsn);
        put_u64(&mut out, PREV_LAST_AT, self.prev_last_lsn);
        let crc = crc32c::crc32c(&out[MAGIC_AT..]);
        put_u32(&mut out, CRC_AT, crc);
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentHeader, String> {
        if buf.len() < SEGMENT_HEADER_LEN {
            return Err("segment header is truncated".into());
        }
        let buf = &buf[..SEGMENT_HEADER_LEN];
        if get_u32(buf, CRC_AT) != crc32c::crc32c(&buf[MAGIC_AT..]) {
            return Err("segment header checksum mismatch".into());
        }
        let format = get_u32(buf, FORMAT_AT);
        let known = get_u32(buf, MAGIC_AT) == MAGIC && matches!(format, FORMAT | FORMAT_UNTIMED);
        let sized = get_u32(buf, HEADER_LEN_AT) as usize == SEGMENT_HEADER_LEN;
        if !known || !sized || buf[USED..].iter().any(|&b| b != 0) {
            return Err("segment header has an unknown magic, format or layout".into());
        }
        let mut instance_id = [0u8; 16];
        instance_id.copy_from_slice(&buf[INSTANCE_AT..INSTANCE_AT + 16]);
        Ok(SegmentHeader {
            segment_size: get_u64(buf, SEG_SIZE_AT),
            instance_id,
            start_lsn: get_u64(buf, START_AT),
            prev_start_lsn: get_u64(buf, PREV_START_AT),
            prev_last_lsn: get_u64(buf, PREV_LAST_AT),
        })
    }
}

/// Whether the segment whose header `buf` holds takes records with commit times (format 2):
/// a store upgraded from format 1 keeps writing untimed records until its active segment ends.
pub(crate) fn holds_commit_times(buf: &[u8]) -> bool {
    buf.len() < SEGMENT_HEADER_LEN || get_u32(buf, FORMAT_AT) != FORMAT_UNTIMED
}

pub(crate) fn file_name(start_lsn: u64) -> String {
    format!("{start_lsn:016x}.wal")
}

/// The start LSN a segment file name encodes, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".wal")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The start of the segment holding the record that ends just before `lsn` (a redo point or
/// a resume position is the end of the record before it).
pub(crate) fn segment_of(lsn: u64, segment_size: u64) -> u64 {
    lsn.saturating_sub(1) / segment_size * segment_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_in_a_segment_header_is_detected() {
        let header = SegmentHeader {
            segment_size: 1 << 24,
            instance_id: [7; 16],
            start_lsn: 1 << 24,
            prev_start_lsn: 0,
            prev_last_lsn: 4096,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                SegmentHeader::decode(&bad).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    /// A store from before commit times (format 1) still opens: its segments decode, and the
    /// writer knows not to put timed records into its active one.
    #[test]
    fn a_format_1_segment_is_read_and_takes_untimed_records() {
        let header = SegmentHeader {
            segment_size: 1 << 20,
            instance_id: [3; 16],
            start_lsn: 0,
            prev_start_lsn: NO_PREVIOUS,
            prev_last_lsn: 0,
        };
        let mut bytes = header.encode();
        assert!(holds_commit_times(&bytes));
        put_u32(&mut bytes, FORMAT_AT, FORMAT_UNTIMED);
        let crc = crc32c::crc32c(&bytes[MAGIC_AT..]);
        put_u32(&mut bytes, CRC_AT, crc);
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), header);
        assert!(!holds_commit_times(&bytes));
        put_u32(&mut bytes, FORMAT_AT, 3);
        let crc = crc32c::crc32c(&bytes[MAGIC_AT..]);
        put_u32(&mut bytes, CRC_AT, crc);
        assert!(
            SegmentHeader::decode(&bytes).is_err(),
            "a future format was accepted"
        );
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_file_name(&file_name(0x1234)), Some(0x1234));
        assert_eq!(parse_file_name("junk.wal"), None);
    }
}
