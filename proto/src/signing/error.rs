//! Why a request could not be canonicalised, signed or verified; each has a stable code.

/// A refusal from the signing scheme. [`SigningError::code`] is the stable, machine-readable
/// name used in test vectors and in the gateway's `401`/`400` problem responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("path is not in normal form")]
    PathNotNormal,
    #[error("query string is malformed")]
    BadQuery,
    #[error("query parameter appears more than once")]
    DuplicateQueryParam,
    #[error("method is not an uppercase token")]
    BadMethod,
    #[error("host is empty or has forbidden characters")]
    BadHost,
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    #[error("X-Timestamp is not YYYY-MM-DDTHH:MM:SSZ")]
    BadTimestamp,
    #[error("X-Partner-Id is not 1-64 characters of [A-Za-z0-9._-]")]
    BadPartnerId,
    #[error("X-Request-Id is not a UUID")]
    BadRequestId,
    #[error("X-Key-Version is not a positive integer")]
    BadKeyVersion,
    #[error("X-Signature is not base64 of 64 bytes")]
    BadSignatureEncoding,
    #[error("public key is not a valid Ed25519 key")]
    BadPublicKey,
    #[error("signature does not verify")]
    SignatureInvalid,
}

impl SigningError {
    /// The stable code for this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PathNotNormal => "path_not_normal",
            Self::BadQuery => "bad_query",
            Self::DuplicateQueryParam => "duplicate_query_param",
            Self::BadMethod => "bad_method",
            Self::BadHost => "bad_host",
            Self::MissingHeader(_) => "missing_header",
            Self::DuplicateHeader(_) => "duplicate_header",
            Self::BadTimestamp => "bad_timestamp",
            Self::BadPartnerId => "bad_partner_id",
            Self::BadRequestId => "bad_request_id",
            Self::BadKeyVersion => "bad_key_version",
            Self::BadSignatureEncoding => "bad_signature_encoding",
            Self::BadPublicKey => "bad_public_key",
            Self::SignatureInvalid => "signature_invalid",
        }
    }
}
