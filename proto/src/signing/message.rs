//! The canonical message that is signed: DESIGN §3.2.

use sha2::{Digest, Sha256};

use super::{AuthFields, SCHEME, SigningError, path, query};

/// The SHA-256 of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyDigest([u8; 32]);

impl BodyDigest {
    /// The digest of a whole body held in memory.
    pub fn of(body: &[u8]) -> Self {
        let mut hasher = BodyHasher::default();
        hasher.update(body);
        hasher.finish()
    }

    /// Lowercase hex, as it appears in the signed message.
    pub fn to_hex(&self) -> String {
        lower_hex(&self.0)
    }
}

/// Lowercase hex of `bytes` (digests in signed messages, store keys).
pub fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    out
}

/// Hashes a body as its chunks arrive, so it is never read twice.
#[derive(Default)]
pub struct BodyHasher(Sha256);

impl BodyHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.0.update(chunk);
    }

    pub fn finish(self) -> BodyDigest {
        BodyDigest(self.0.finalize().into())
    }
}

/// What a signature covers besides the identity fields.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The HTTP method; gRPC requests use `POST`.
    pub method: &'a str,
    /// `Host` or `:authority`, port kept if it was sent.
    pub host: &'a str,
    /// The path exactly as received (it must already be in normal form).
    pub path: &'a str,
    /// The raw query string without the `?`; empty if there is none.
    pub query: &'a str,
    pub body: BodyDigest,
}

/// Builds the message that is signed, refusing inputs the scheme does not accept.
pub fn canonical_message(
    parts: &RequestParts<'_>,
    fields: &AuthFields,
) -> Result<String, SigningError> {
    let method = canonical_method(parts.method)?;
    let host = canonical_host(parts.host)?;
    path::check_normal(parts.path)?;
    let query = query::canonical_query(parts.query)?;
    let lines = [
        SCHEME,
        &method,
        &host,
        parts.path,
        &query,
        &parts.body.to_hex(),
        fields.timestamp(),
        fields.partner_id(),
        fields.request_id(),
    ];
    Ok(lines.join("\n"))
}

fn canonical_method(method: &str) -> Result<String, SigningError> {
    let ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic());
    ok.then(|| method.to_ascii_uppercase())
        .ok_or(SigningError::BadMethod)
}

/// Lowercased; letters, digits, `.-:[]` only (a DNS name or IP literal, optional port).
fn canonical_host(host: &str) -> Result<String, SigningError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then(|| host.to_ascii_lowercase())
        .ok_or(SigningError::BadHost)
}
