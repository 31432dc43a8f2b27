//! The generated code in `src/gen/` is committed so that builds need no `protoc`; this test
//! regenerates it and fails on any difference.
//!
//! To update after editing a `.proto` file (needs `protoc`, Debian `protobuf-compiler`):
//! `PHOTONDB_REGEN=1 cargo test -p photondb-proto --test codegen`

use std::path::{Path, PathBuf};

const GENERATED: [&str; 2] = ["photondb.v1.rs", "photondb_v1_descriptor.bin"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out: &Path) {
    let proto_root = crate_dir().join("proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .out_dir(out)
        .file_descriptor_set_path(out.join("photondb_v1_descriptor.bin"))
        .compile_protos(
            &[proto_root.join("photondb/v1/storage.proto")],
            &[proto_root],
        )
        .expect("protoc failed: is protobuf-compiler installed?");
}

#[test]
fn generated_code_is_up_to_date() {
    let committed = crate_dir().join("src/gen");
    if std::env::var_os("PHOTONDB_REGEN").is_some() {
        generate(&committed);
        return;
    }
    let fresh = tempfile::tempdir().expect("tempdir");
    generate(fresh.path());
    for name in GENERATED {
        let want = std::fs::read(fresh.path().join(name)).expect("freshly generated file");
        let have = std::fs::read(committed.join(name)).unwrap_or_default();
        assert!(
            want == have,
            "proto/src/gen/{name} is stale: run `PHOTONDB_REGEN=1 cargo test -p photondb-proto --test codegen` and commit"
        );
    }
}
