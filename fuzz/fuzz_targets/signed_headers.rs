//! Arbitrary header lists must parse or be refused, never panic; a parse round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photondb_proto::signing::parse_signed_headers;

fuzz_target!(|data: &[u8]| {
    // Lines of `name:value`; values may be any bytes.
    let headers: Vec<(&str, &[u8])> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, &line[colon + 1..]))
        })
        .collect();
    if let Ok(parsed) = parse_signed_headers(headers) {
        assert!(!parsed.fields.partner_id().is_empty());
        assert_eq!(parsed.fields.request_id().len(), 36);
    }
});
