//! Parsing of the signature headers: each of the four exactly once, `X-Key-Version` at most once.

use super::{
    HEADER_KEY_VERSION, HEADER_PARTNER_ID, HEADER_REQUEST_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    Signature, SigningError, Timestamp,
};

/// The signed identity fields of a request, each checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFields {
    partner_id: String,
    request_id: String,
    timestamp: String,
    time: Timestamp,
}

impl AuthFields {
    /// Checks each field's shape: partner id `[A-Za-z0-9._-]{1,64}`, request id a hyphenated
    /// UUID, timestamp `YYYY-MM-DDTHH:MM:SSZ`. They enter the signed message verbatim.
    pub fn new(partner_id: &str, request_id: &str, timestamp: &str) -> Result<Self, SigningError> {
        if !is_partner_id(partner_id) {
            return Err(SigningError::BadPartnerId);
        }
        if !is_uuid(request_id) {
            return Err(SigningError::BadRequestId);
        }
        let time = Timestamp::parse(timestamp)?;
        Ok(Self {
            partner_id: partner_id.to_owned(),
            request_id: request_id.to_owned(),
            timestamp: timestamp.to_owned(),
            time,
        })
    }

    pub fn partner_id(&self) -> &str {
        &self.partner_id
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// `X-Timestamp` verbatim.
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// `X-Timestamp` parsed.
    pub fn time(&self) -> Timestamp {
        self.time
    }
}

/// The parsed signature headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub fields: AuthFields,
    pub signature: Signature,
    /// `X-Key-Version`; `None` means the partner's newest key that is not revoked.
    pub key_version: Option<u32>,
}

/// Finds the signature headers among all of a request's headers (names compared without
/// case). Each of the four must appear exactly once; values must be visible ASCII.
pub fn parse_signed_headers<'a, I>(headers: I) -> Result<SignedHeaders, SigningError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut slots: [Option<&str>; 5] = [None; 5];
    const NAMES: [&str; 5] = [
        HEADER_PARTNER_ID,
        HEADER_REQUEST_ID,
        HEADER_TIMESTAMP,
        HEADER_SIGNATURE,
        HEADER_KEY_VERSION,
    ];
    for (name, value) in headers {
        let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) else {
            continue;
        };
        if slots[i].is_some() {
            return Err(SigningError::DuplicateHeader(NAMES[i]));
        }
        slots[i] = Some(visible_ascii(value).ok_or_else(|| malformed(NAMES[i]))?);
    }
    let required = |i: usize| slots[i].ok_or(SigningError::MissingHeader(NAMES[i]));
    let fields = AuthFields::new(required(0)?, required(1)?, required(2)?)?;
    let signature = Signature::from_base64(required(3)?)?;
    let key_version = slots[4].map(parse_key_version).transpose()?;
    Ok(SignedHeaders {
        fields,
        signature,
        key_version,
    })
}

fn malformed(name: &'static str) -> SigningError {
    match name {
        HEADER_PARTNER_ID => SigningError::BadPartnerId,
        HEADER_REQUEST_ID => SigningError::BadRequestId,
        HEADER_TIMESTAMP => SigningError::BadTimestamp,
        HEADER_SIGNATURE => SigningError::BadSignatureEncoding,
        _ => SigningError::BadKeyVersion,
    }
}

fn visible_ascii(value: &[u8]) -> Option<&str> {
    let ok = value.iter().all(|b| b.is_ascii_graphic());
    ok.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// A positive decimal integer without sign or leading zeros.
fn parse_key_version(text: &str) -> Result<u32, SigningError> {
    let canonical =
        !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    canonical
        .then(|| text.parse().ok())
        .flatten()
        .ok_or(SigningError::BadKeyVersion)
}

fn is_partner_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The hyphenated 8-4-4-4-12 hex form of a UUID.
fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}
