//! Any bytes at any position: the WAL record decoder (header, CRC, payload) must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_storaged::engine::fuzzing::decode_wal_record;

fuzz_target!(|data: &[u8]| {
    let lsn = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let _ = decode_wal_record(data, lsn);
    let _ = decode_wal_record(data.get(8..).unwrap_or_default(), lsn);
});
