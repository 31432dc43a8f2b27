//! The path normal-form check never panics; accepted segments are non-empty, not dots, and one
//! per raw `/` (an escaped `/` or `\` decodes inside its segment, DESIGN §3.3).
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_proto::signing::path::decode_normal;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else { return };
    if let Ok(segments) = decode_normal(path) {
        let raw_segments = if path == "/" { 0 } else { path.split('/').count() - 1 };
        assert_eq!(segments.len(), raw_segments);
        for segment in segments {
            assert!(!segment.is_empty() && segment != "." && segment != "..");
        }
    }
});
