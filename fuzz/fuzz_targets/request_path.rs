//! The path normal-form check never panics, and accepted segments are non-empty and not dots.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_proto::signing::path::decode_normal;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if let Ok(segments) = decode_normal(path) {
        for segment in segments {
            assert!(!segment.is_empty() && segment != "." && segment != "..");
            assert!(!segment.contains('/') && !segment.contains('\\'));
        }
    }
});
