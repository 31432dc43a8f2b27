//! The cost of one `verify_strict` (the Ed25519 check every signed request needs) and of the
//! whole native verification (canonical message + `verify_strict`), in µs of CPU per call: the
//! yardstick `scripts/bench-pipeline` measures the gateway's pipeline against.
//!
//! `cargo bench -p photondb-proto --bench verify`
// A timing benchmark reads the real clock.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use photondb_proto::signing::{
    self, AuthFields, BodyDigest, RequestParts, SecretKey, parse_signed_headers,
};

const ROUNDS: u32 = 20_000;

fn main() {
    let key = SecretKey::from_seed(&[7; 32]);
    let public = key.public_key();
    let message = [b'm'; 300];
    let signature = key.sign(&message);
    let raw = per_call(|| {
        public
            .verify_strict(black_box(&message), black_box(&signature))
            .expect("valid")
    });

    let parts = RequestParts {
        method: "GET",
        host: "db.example.com",
        path: "/v1/dbs/shop/tables/orders/docs/o-1",
        query: "",
        body: BodyDigest::of(b""),
    };
    let fields = AuthFields::new(
        "acme",
        "2f0c8e4a-1b7d-4c55-9a31-6d0e8f4b2c19",
        "2026-01-01T00:00:00Z",
    )
    .expect("fields");
    let headers = signing::signature_headers(&key, &parts, &fields, None).expect("sign");
    let full = per_call(|| {
        let pairs = headers.iter().map(|(n, v)| (*n, v.as_bytes()));
        let signed = parse_signed_headers(pairs).expect("headers");
        signing::verify(&public, black_box(&parts), &signed).expect("verifies")
    });
    println!("verify_strict                    {raw:8.2} µs per call");
    println!(
        "native check (headers + verify)  {full:8.2} µs per call ({:.2}x verify_strict)",
        full / raw
    );
}

/// Mean µs per call over [`ROUNDS`] calls, after a warm-up.
fn per_call<T>(mut f: impl FnMut() -> T) -> f64 {
    for _ in 0..ROUNDS / 10 {
        black_box(f());
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(f());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
}
