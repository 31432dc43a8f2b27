//! The path normal form of DESIGN §3.3: a path is accepted exactly as sent or refused, never
//! normalised, so the bytes that were signed are the bytes that are routed and authorised.

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
    let rest = path.strip_prefix('/').ok_or(SigningError::PathNotNormal)?;
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/').map(decode_segment).collect()
}

fn decode_segment(segment: &str) -> Result<String, SigningError> {
    let raw = segment.as_bytes();
    if raw.is_empty() || !raw.iter().all(|&b| b == b'%' || is_pchar(b)) {
        return Err(SigningError::PathNotNormal);
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
    Ok(text)
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
