//! Any bytes at any position: the WAL record decoder (header, CRC) and then what recovery runs
//! on a payload (`PayloadView::parse`, `apply_in_place` on a scratch page) must not panic.
//! The first 8 bytes pick the LSN; the payload path is also fed the input directly, so it is
//! reached without a valid CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_storaged::engine::fuzzing::{apply_payload, decode_wal_record};

fuzz_target!(|data: &[u8]| {
    let lsn = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let _ = decode_wal_record(data, lsn);
    let _ = decode_wal_record(data.get(8..).unwrap_or_default(), lsn);
    let _ = apply_payload(data);
});
