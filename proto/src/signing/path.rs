//! The path normal form of DESIGN §3.3: a path is accepted exactly as sent or refused, never
//! normalised, so the bytes that were signed are the bytes that are routed and authorised.

use std::borrow::Cow;

use super::SigningError;
use super::percent::{self, HexCase};

/// Checks that `path` is in normal form and returns its decoded segments.
///
/// The path is split on raw `/` before anything is decoded, so `%2F` and `%5C` decode into
/// their segment (a document key may hold `/` or `\`) and never change the route.
///
/// Refused: no leading `/`; empty segments (`//`, a trailing `/`); segments that are `.` or
/// `..` once decoded; lowercase, truncated or non-hex escapes; escapes of unreserved
/// characters (they would give one path two spellings); bytes that RFC 3986 does not allow
/// bare in a path segment (a raw `\` among them); segments that are not UTF-8 once decoded.
/// The root `/` has no segments.
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
    let text = if raw.contains(&b'%') {
        Cow::Owned(decode_escapes(raw)?)
    } else {
        // Bare pchars only: ASCII, so already the decoded text.
        Cow::Borrowed(segment)
    };
    if text == "." || text == ".." {
        return Err(SigningError::PathNotNormal);
    }
    Ok(text)
}

/// The text of a segment with escapes. `%2F` and `%5C` are ordinary escapes here: the path
/// was already split on raw `/`.
fn decode_escapes(raw: &[u8]) -> Result<String, SigningError> {
    let decoded = percent::decode(raw, HexCase::UpperOnly).ok_or(SigningError::PathNotNormal)?;
    if decoded
        .iter()
        .any(|d| d.escaped && percent::is_unreserved(d.byte))
    {
        return Err(SigningError::PathNotNormal);
    }
    let bytes: Vec<u8> = decoded.into_iter().map(|d| d.byte).collect();
    String::from_utf8(bytes).map_err(|_| SigningError::PathNotNormal)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn owned(segments: &[&str]) -> Result<Vec<String>, SigningError> {
        Ok(segments.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn escaped_slash_and_backslash_decode_into_their_segment() {
        assert_eq!(
            decode_normal("/v1/docs/a%2Fb"),
            owned(&["v1", "docs", "a/b"])
        );
        assert_eq!(decode_normal("/x%2Fy%5Cz"), owned(&["x/y\\z"]));
        assert_eq!(decode_normal("/%2F%2F"), owned(&["//"]));
        assert_eq!(decode_normal("/%5C"), owned(&["\\"]));
        assert_eq!(decode_normal("/..%2F"), owned(&["../"]));
        assert_eq!(check_normal("/a%2Fb/c%5Cd"), Ok(()));
    }

    #[test]
    fn root_has_no_segments() {
        assert_eq!(decode_normal("/"), owned(&[]));
    }

    #[test]
    fn refusals_stay_refused() {
        for bad in [
            "",
            "v1/dbs",
            "/v1//dbs",
            "/v1/dbs/",
            "//",
            "/./x",
            "/../x",
            "/%2E%2E/x",
            "/.%2E/x",
            "/%2E",
            "/a%2fb",
            "/a%5cb",
            "/caf%c3%a9",
            "/a\\b",
            "/%41bc",
            "/a%7E",
            "/abc%4",
            "/abc%G1",
            "/%FF%FE",
            "/a b",
            "/a?b",
            "/a#b",
        ] {
            assert_eq!(
                decode_normal(bad),
                Err(SigningError::PathNotNormal),
                "{bad:?}"
            );
            assert_eq!(
                check_normal(bad),
                Err(SigningError::PathNotNormal),
                "{bad:?}"
            );
        }
    }

    proptest! {
        /// Any key, percent-encoded as clients encode it, is one segment that decodes back
        /// to the key (unless it is `.` or `..`).
        #[test]
        fn encoded_keys_are_one_segment(key in "\\PC{1,12}") {
            prop_assume!(key != "." && key != "..");
            let path = format!("/docs/{}", percent::encode(key.as_bytes()));
            prop_assert_eq!(decode_normal(&path), Ok(vec!["docs".to_owned(), key]));
        }
    }
}
