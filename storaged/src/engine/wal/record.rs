//! WAL records: a fixed header, then the payload, padded to 8 bytes.
//!
//! ```text
//! 0        4             8          16         24               32     33     40
//! +--------+-------------+----------+----------+----------------+------+------+---------+-----+
//! | crc32c | payload_len | lsn      | prev_lsn | durable_before | kind | zero | payload | pad |
//! +--------+-------------+----------+----------+----------------+------+------+---------+-----+
//! crc32c = crc32c(record[4..40] ++ payload);  lsn = this record's own byte position
//! ```
//! Storing the record's own position means a stale record left in a reused segment, or a block
//! written to the wrong place, fails validation even though its CRC is fine.
//!
//! Kind 2 (segment format 2 on) begins its payload with the commit time, Unix milliseconds
//! (u64), which point-in-time restore by time reads; kind 1 (format 1 segments, written before
//! commit times were logged) has none. `payload_len` counts the stored bytes, time included.
//!
//! `durable_before`: every log byte before this position was durable before this record was
//! written. Recovery uses it to tell a torn write (the damaged record and this one were in the
//! same unsynced write, whose sectors the disk may persist in any order) from corruption (the
//! damaged record was already durable when this one was written).

use crate::engine::bytes::{get_u32, get_u64, put_u32, put_u64};

const CRC_AT: usize = 0;
const LEN_AT: usize = CRC_AT + 4;
const LSN_AT: usize = LEN_AT + 4;
const PREV_AT: usize = LSN_AT + 8;
const DURABLE_AT: usize = PREV_AT + 8;
const KIND_AT: usize = DURABLE_AT + 8;
const ZERO_AT: usize = KIND_AT + 1;
pub(crate) const RECORD_HEADER_LEN: usize = ZERO_AT + 7;

pub(crate) const ALIGN: u64 = 8;

/// A committed transaction's page changes, without a commit time (format 1 segments).
pub(crate) const KIND_COMMIT: u8 = 1;
/// The same with its commit time first (format 2 segments, which this version writes).
pub(crate) const KIND_COMMIT_TIMED: u8 = 2;
const TIME_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) payload_len: u32,
    pub(crate) lsn: u64,
    pub(crate) prev_lsn: u64,
    pub(crate) durable_before: u64,
    pub(crate) kind: u8,
    /// Unix milliseconds of the commit (kind 2); 0 for kind 1, which does not record it.
    pub(crate) commit_unix_ms: u64,
}

impl RecordHeader {
    /// Bytes the record occupies in the log, padding included.
    pub(crate) fn total_len(&self) -> u64 {
        record_len(self.payload_len as usize)
    }
}

/// Bytes a record of `kind` with a payload of `payload_len` bytes occupies, padding included.
pub(crate) fn record_len_of(kind: u8, payload_len: usize) -> u64 {
    record_len(prefix_len(kind) + payload_len)
}

fn prefix_len(kind: u8) -> usize {
    if kind == KIND_COMMIT_TIMED {
        TIME_LEN
    } else {
        0
    }
}

/// Bytes a record whose stored payload (commit time included) is `payload_len` occupies.
pub(crate) fn record_len(payload_len: usize) -> u64 {
    ((RECORD_HEADER_LEN + payload_len) as u64).div_ceil(ALIGN) * ALIGN
}

fn crc(record: &[u8], payload_len: usize) -> u32 {
    crc32c::crc32c(&record[LEN_AT..RECORD_HEADER_LEN + payload_len])
}

/// The record for `payload`; `header.payload_len` is taken from the payload (and kind).
pub(crate) fn encode(header: &RecordHeader, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(header, payload, &mut out);
    out
}

/// Appends the record for `payload` to `out` (the WAL's write buffer), without a copy of its own.
pub(crate) fn encode_into(header: &RecordHeader, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let prefix = prefix_len(header.kind);
    let stored = prefix + payload.len();
    out.resize(start + record_len(stored) as usize, 0);
    let record = &mut out[start..];
    put_u32(record, LEN_AT, stored as u32);
    put_u64(record, LSN_AT, header.lsn);
    put_u64(record, PREV_AT, header.prev_lsn);
    put_u64(record, DURABLE_AT, header.durable_before);
    record[KIND_AT] = header.kind;
    if prefix > 0 {
        put_u64(record, RECORD_HEADER_LEN, header.commit_unix_ms);
    }
    record[RECORD_HEADER_LEN + prefix..RECORD_HEADER_LEN + stored].copy_from_slice(payload);
    let crc = crc(record, stored);
    put_u32(record, CRC_AT, crc);
}

/// Why bytes at a position are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Header and everything checked are zero: nothing was ever written here.
    Zero,
    Damaged(String),
}

/// Validates the record that should start at `buf[0]`, which is log position `expected_lsn`;
/// returns its header and its payload (after the commit time, for kind 2).
pub(crate) fn decode(buf: &[u8], expected_lsn: u64) -> Result<(RecordHeader, &[u8]), Invalid> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err(Invalid::Damaged(
            "record header runs past the segment end".into(),
        ));
    }
    if buf[..RECORD_HEADER_LEN].iter().all(|&b| b == 0) {
        return Err(Invalid::Zero);
    }
    let mut header = RecordHeader {
        payload_len: get_u32(buf, LEN_AT),
        lsn: get_u64(buf, LSN_AT),
        prev_lsn: get_u64(buf, PREV_AT),
        durable_before: get_u64(buf, DURABLE_AT),
        kind: buf[KIND_AT],
        commit_unix_ms: 0,
    };
    check(buf, &header, expected_lsn)?;
    let prefix = prefix_len(header.kind);
    if prefix > 0 {
        header.commit_unix_ms = get_u64(buf, RECORD_HEADER_LEN);
    }
    let payload = &buf[RECORD_HEADER_LEN + prefix..RECORD_HEADER_LEN + header.payload_len as usize];
    Ok((header, payload))
}

/// The headers of the valid records of a segment (`segment` is the whole file, starting at
/// log position `start_lsn`), in order, up to the first position that holds none.
pub(crate) fn records_of(segment: &[u8], start_lsn: u64) -> Vec<RecordHeader> {
    let mut at = crate::engine::wal::segment::SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Some(rest) = segment.get(at..) {
        let Ok((header, _)) = decode(rest, start_lsn + at as u64) else {
            break;
        };
        at += header.total_len() as usize;
        out.push(header);
    }
    out
}

fn check(buf: &[u8], h: &RecordHeader, expected_lsn: u64) -> Result<(), Invalid> {
    let damaged = |m: &str| Err(Invalid::Damaged(m.into()));
    if h.total_len() > buf.len() as u64 {
        return damaged("record length runs past the segment end");
    }
    // The cheap position check first: scanning a garbage tail tries every aligned offset.
    if h.lsn != expected_lsn {
        return damaged("record LSN does not match its position (stale or misplaced)");
    }
    if get_u32(buf, CRC_AT) != crc(buf, h.payload_len as usize) {
        return damaged("record checksum mismatch");
    }
    let padding = &buf[RECORD_HEADER_LEN + h.payload_len as usize..h.total_len() as usize];
    let known = matches!(h.kind, KIND_COMMIT | KIND_COMMIT_TIMED);
    if !known || buf[ZERO_AT..RECORD_HEADER_LEN].iter().any(|&b| b != 0) {
        return damaged("record has an unknown kind or nonzero reserved bytes");
    }
    if (h.payload_len as usize) < prefix_len(h.kind) {
        return damaged("record is too short for its commit time");
    }
    if padding.iter().any(|&b| b != 0) {
        return damaged("record padding is not zero");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lsn: u64, prev_lsn: u64) -> RecordHeader {
        RecordHeader {
            payload_len: 0,
            lsn,
            prev_lsn,
            durable_before: lsn,
            kind: KIND_COMMIT_TIMED,
            commit_unix_ms: 1_790_000_000_000,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let rec = encode(&header(4096, 2048), b"hello");
        let (h, payload) = decode(&rec, 4096).unwrap();
        assert_eq!((h.lsn, h.prev_lsn, payload), (4096, 2048, &b"hello"[..]));
        assert_eq!(h.commit_unix_ms, 1_790_000_000_000);
        assert_eq!(rec.len() as u64, h.total_len());
    }

    /// Records written before commit times were logged (kind 1) still read, with no time.
    #[test]
    fn an_untimed_record_reads_with_no_commit_time() {
        let untimed = RecordHeader {
            kind: KIND_COMMIT,
            ..header(4096, 2048)
        };
        let rec = encode(&untimed, b"hello");
        let (h, payload) = decode(&rec, 4096).unwrap();
        assert_eq!(
            (h.kind, h.commit_unix_ms, payload),
            (KIND_COMMIT, 0, &b"hello"[..])
        );
        assert_eq!(rec.len() as u64, record_len_of(KIND_COMMIT, 5));
        assert_eq!(
            encode(&header(4096, 0), b"hello").len() as u64,
            record_len_of(KIND_COMMIT_TIMED, 5)
        );
    }

    #[test]
    fn every_single_bit_flip_in_a_record_is_detected() {
        let rec = encode(&header(4096, 2048), b"some payload bytes!");
        for bit in 0..rec.len() * 8 {
            let mut bad = rec.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&bad, 4096).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn a_record_at_the_wrong_position_is_rejected() {
        let rec = encode(&header(4096, 2048), b"x");
        assert!(matches!(decode(&rec, 8192), Err(Invalid::Damaged(_))));
    }

    #[test]
    fn mutated_records_decode_or_fail_without_panicking() {
        use crate::engine::redo::{Change, PageChange, Payload};
        use rand::{Rng, SeedableRng};
        let payload = Payload {
            summary: "put".into(),
            pages: vec![PageChange {
                page_no: 3,
                change: Change::Image(vec![1; 300]),
            }],
        };
        let valid = encode(&header(4096, 128), &payload.encode());
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..5000 {
            let mut bytes = valid.clone();
            for _ in 0..rng.gen_range(1..6) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = rng.r#gen();
            }
            bytes.truncate(rng.gen_range(0..=bytes.len()));
            if let Ok((_, body)) = decode(&bytes, 4096) {
                let _ = Payload::decode(body);
            }
            let _ = Payload::decode(&bytes);
        }
    }
}
