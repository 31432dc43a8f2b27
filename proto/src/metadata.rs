//! The gRPC metadata the gateway sends with every call to storaged, and storaged reads.

/// The request id (a hyphenated UUID), the same one the client saw and the audit logs carry.
pub const REQUEST_ID: &str = "x-request-id";

/// The authenticated principal (DESIGN §3.1), e.g. `partner:acme`.
pub const PRINCIPAL: &str = "x-photondb-principal";

#[cfg(test)]
mod tests {
    /// The keys are part of the wire contract: storaged of one release must understand the
    /// gateway of another, so they never change by accident.
    #[test]
    fn the_metadata_keys_are_fixed() {
        assert_eq!(super::REQUEST_ID, "x-request-id");
        assert_eq!(super::PRINCIPAL, "x-photondb-principal");
    }
}
