//! Canonicalising any query never panics, and a canonical query is its own canonical form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_proto::signing::query::canonical_query;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(canonical) = canonical_query(raw) {
        assert_eq!(canonical_query(&canonical).as_deref(), Ok(canonical.as_str()));
        assert!(canonical.bytes().all(|b| b.is_ascii_graphic()));
    }
});
