//! The Ed25519 request-signing scheme of DESIGN §3.2–3.3: one implementation, used by the
//! gateway to verify and by photonctl to sign.
//!
//! The signed message is nine lines joined by `\n`:
//! `PHOTONDB-ED25519-V1`, method, host, path, canonical query, body SHA-256 (hex),
//! timestamp, partner id, request id.

mod error;
mod headers;
mod keys;
mod message;
pub mod path;
mod percent;
pub mod query;
mod timestamp;

pub use error::SigningError;
pub use headers::{AuthFields, SignedHeaders, parse_signed_headers};
pub use keys::{PublicKey, SecretKey, Signature};
pub use message::{BodyDigest, BodyHasher, RequestParts, canonical_message, lower_hex};
pub use timestamp::Timestamp;

/// The first line of every signed message; a new scheme gets a new line.
pub const SCHEME: &str = "PHOTONDB-ED25519-V1";

/// Header names (HTTP) and metadata keys (gRPC), lowercase as HTTP/2 sends them.
pub const HEADER_PARTNER_ID: &str = "x-partner-id";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
pub const HEADER_TIMESTAMP: &str = "x-timestamp";
pub const HEADER_SIGNATURE: &str = "x-signature";
pub const HEADER_KEY_VERSION: &str = "x-key-version";

/// Proof that a request's signature was checked against a key. Only [`verify`] builds it, so
/// code that must run after verification (replay guard, forwarding) can demand it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureVerified {
    fields: AuthFields,
    key_version: Option<u32>,
}

impl SignatureVerified {
    /// The verified partner id, request id and timestamp.
    pub fn fields(&self) -> &AuthFields {
        &self.fields
    }

    /// The key version the client asked for, if it named one.
    pub fn key_version(&self) -> Option<u32> {
        self.key_version
    }
}

/// Signs a request: returns the signature for the canonical message of `parts` and `fields`.
pub fn sign(
    key: &SecretKey,
    parts: &RequestParts<'_>,
    fields: &AuthFields,
) -> Result<Signature, SigningError> {
    let message = canonical_message(parts, fields)?;
    Ok(key.sign(message.as_bytes()))
}

/// Signs a request and returns the headers that carry the signature (DESIGN §3.2), in the
/// order people read them: partner id, request id, timestamp, signature, key version.
/// The one place a client builds them (photonctl `sign`, `request` and `bench`, tests).
pub fn signature_headers(
    key: &SecretKey,
    parts: &RequestParts<'_>,
    fields: &AuthFields,
    key_version: Option<u32>,
) -> Result<Vec<(&'static str, String)>, SigningError> {
    let signature = sign(key, parts, fields)?;
    let mut headers = vec![
        (HEADER_PARTNER_ID, fields.partner_id().to_owned()),
        (HEADER_REQUEST_ID, fields.request_id().to_owned()),
        (HEADER_TIMESTAMP, fields.timestamp().to_owned()),
        (HEADER_SIGNATURE, signature.to_base64()),
    ];
    if let Some(version) = key_version {
        headers.push((HEADER_KEY_VERSION, version.to_string()));
    }
    Ok(headers)
}

/// Verifies a signed request strictly (non-canonical signatures and small-order keys fail).
pub fn verify(
    key: &PublicKey,
    parts: &RequestParts<'_>,
    headers: &SignedHeaders,
) -> Result<SignatureVerified, SigningError> {
    let message = canonical_message(parts, &headers.fields)?;
    key.verify_strict(message.as_bytes(), &headers.signature)?;
    Ok(SignatureVerified {
        fields: headers.fields.clone(),
        key_version: headers.key_version,
    })
}

#[cfg(test)]
mod tests;
