//! The path normal form of DESIGN §3.3: a path is accepted exactly as sent or refused, never
//! normalised, so the bytes that were signed are the bytes that are routed and authorised.

use std::borrow::Cow;

use super::SigningError;
use super::percent::{self, HexCase};

/// Checks that `path` is in normal form and returns its decoded segments.
///
/// Refused: no leading `/`; empty segments (`//`, a trailing `/`); dot segments, escaped or
/// not; `%2F` and `%5C`; lowercase, truncated or non-hex escapes; escapes of unreserved
/// characters (they would give one path two spellings); bytes that RFC 3986 does not allow
/// bare in a path segment; segments that are not UTF-8 once decoded. The root `/` has no
/// segments.
pub fn decode_normal(path: &str) -> Result<Vec<String>, SigningError> {
    segments(path)?
        .map(|s| decode_segment(s).map(Cow::into_owned))
        .collect()
}

/// [`decode_normal`]'s check alone, without keeping the segments (the signed message only
/// needs to know the path is in normal form).
pub fn check_normal(path: &str) -> Result<(), SigningError> {
    segments(path)?.try_for_each(|s| decode_segment(s).map(drop))
}

/// The raw segments after the leading `/` (none for the root).
fn segments(path: &str) -> Result<impl Iterator<Item = &str>, SigningError> {
    let rest = path.strip_prefix('/').ok_or(SigningError::PathNotNormal)?;
    Ok(rest.split('/').filter(move |_| !rest.is_empty()))
}

fn decode_segment(segment: &str) -> Result<Cow<'_, str>, SigningError> {
    let raw = segment.as_bytes();
    if raw.is_empty() || !raw.iter().all(|&b| b == b'%' || is_pchar(b)) {
        return Err(SigningError::PathNotNormal);
    }
    if segment == "." || segment == ".." {
        return Err(SigningError::PathNotNormal);
    }
    if !raw.contains(&b'%') {
        // Bare pchars only: ASCII, so already the decoded text.
        return Ok(Cow::Borrowed(segment));
    }
    let decoded = percent::decode(raw, HexCase::UpperOnly).ok_or(SigningError::PathNotNormal)?;
    let mut bytes = Vec::with_capacity(decoded.len());
    for d in decoded {
        let forbidden_escape =
            d.escaped && (percent::is_unreserved(d.byte) || is_separator(d.byte));
        if forbidden_escape {
            return Err(SigningError::PathNotNormal);
        }
        bytes.push(d.byte);
    }
    let text = String::from_utf8(bytes).map_err(|_| SigningError::PathNotNormal)?;
    if text == "." || text == ".." {
        return Err(SigningError::PathNotNormal);
    }
    Ok(Cow::Owned(text))
}

fn is_separator(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// RFC 3986 `pchar` less `pct-encoded`: unreserved, sub-delims, `:` and `@`.
fn is_pchar(b: u8) -> bool {
    percent::is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}
