//! photondb-proto: what both sides of the wire share — the protobuf services, the shape of
//! names and keys, every wire limit, the gRPC metadata keys, and the Ed25519 request-signing
//! scheme (DESIGN §3.2–3.3).

pub mod audit;
pub mod limits;
pub mod logging;
pub mod metadata;
pub mod names;
pub mod signing;

/// Generated protobuf and tonic code for `photondb.v1` (committed; see `tests/codegen.rs`).
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]
    include!("gen/photondb.v1.rs");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/photondb_v1_descriptor.bin");
}
