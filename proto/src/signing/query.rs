//! The canonical query of DESIGN §3.3.

use super::SigningError;
use super::percent::{self, HexCase};

/// Canonicalises a raw query string (without the `?`).
///
/// Pairs are split on `&`, then on the first `=` (no `=` means an empty value), decoded (a
/// literal `+` stays `+`), re-encoded with only unreserved characters bare, sorted by encoded
/// name then value, and joined. Refused: empty pairs or names, bad escapes, names or values
/// that are not UTF-8, and a name that appears twice.
pub fn canonical_query(raw: &str) -> Result<String, SigningError> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let mut pairs = raw
        .split('&')
        .map(encode_pair)
        .collect::<Result<Vec<_>, _>>()?;
    pairs.sort();
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(SigningError::DuplicateQueryParam);
    }
    let joined: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    Ok(joined.join("&"))
}

/// Decodes a raw query into (name, value) pairs after the same checks as [`canonical_query`],
/// in the order sent. The gateway routes on these.
pub fn decode_pairs(raw: &str) -> Result<Vec<(String, String)>, SigningError> {
    canonical_query(raw)?;
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    raw.split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode_text(name)?, decode_text(value)?))
        })
        .collect()
}

fn encode_pair(pair: &str) -> Result<(String, String), SigningError> {
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    if name.is_empty() {
        return Err(SigningError::BadQuery);
    }
    let name = decode_text(name)?;
    let value = decode_text(value)?;
    Ok((
        percent::encode(name.as_bytes()),
        percent::encode(value.as_bytes()),
    ))
}

fn decode_text(raw: &str) -> Result<String, SigningError> {
    let decoded = percent::decode(raw.as_bytes(), HexCase::Any).ok_or(SigningError::BadQuery)?;
    String::from_utf8(decoded.into_iter().map(|d| d.byte).collect())
        .map_err(|_| SigningError::BadQuery)
}
