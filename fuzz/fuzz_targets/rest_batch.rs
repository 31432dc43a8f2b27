//! The gateway's rest_batch parser on any bytes: see `photondb_gateway::fuzzing::rest_batch` for the
//! property checked besides "never panics".
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| photondb_gateway::fuzzing::rest_batch(data));
