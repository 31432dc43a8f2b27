//! Percent-encoding as RFC 3986 defines it, with the strictness the scheme needs.

/// How to treat lowercase hex digits in an escape.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexCase {
    /// Only `%2F`, never `%2f` (paths: one spelling per path).
    UpperOnly,
    /// Either case (queries are re-encoded anyway).
    Any,
}

/// RFC 3986 unreserved characters: the only bytes left bare in canonical form.
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// One decoded byte of an input, and whether it came from an escape.
#[derive(Clone, Copy)]
pub(crate) struct Decoded {
    pub(crate) byte: u8,
    pub(crate) escaped: bool,
}

/// Decodes `%XX` escapes; `None` if an escape is truncated, not hex, or of the wrong case.
pub(crate) fn decode(input: &[u8], case: HexCase) -> Option<Vec<Decoded>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hi = hex_value(*input.get(i + 1)?, case)?;
            let lo = hex_value(*input.get(i + 2)?, case)?;
            out.push(Decoded {
                byte: hi << 4 | lo,
                escaped: true,
            });
            i += 3;
        } else {
            out.push(Decoded {
                byte: input[i],
                escaped: false,
            });
            i += 1;
        }
    }
    Some(out)
}

fn hex_value(c: u8, case: HexCase) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' if case == HexCase::Any => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Encodes every byte but the unreserved ones as `%XX` with uppercase hex.
pub(crate) fn encode(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}
