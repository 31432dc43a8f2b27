//! The gRPC metadata the gateway sends with every call to storaged, and storaged reads.

/// The request id (a hyphenated UUID), the same one the client saw and the audit logs carry.
pub const REQUEST_ID: &str = "x-request-id";

/// The authenticated principal (DESIGN §3.1), e.g. `partner:acme`.
pub const PRINCIPAL: &str = "x-photondb-principal";
