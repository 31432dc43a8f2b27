//! Pipeline step 10 for documents: JSON that is UTF-8, well-formed, bounded in depth, and an
//! object. The client's bytes are forwarded unchanged once they pass.

use bytes::Bytes;

use crate::errors::Refusal;

/// Why a JSON payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Larger than the wire contract's largest document (`MAX_DOCUMENT_BYTES`).
    TooLarge,
    NotUtf8,
    TooDeep,
    Malformed,
    NotAnObject,
}

impl From<JsonError> for Refusal {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::TooLarge => Self::PayloadTooLarge,
            JsonError::NotUtf8 => Self::JsonNotUtf8,
            JsonError::TooDeep => Self::JsonTooDeep,
            JsonError::Malformed => Self::JsonMalformed,
            JsonError::NotAnObject => Self::DocumentNotObject,
        }
    }
}

/// A checked document: a JSON object, as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document(Bytes);

impl Document {
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// Checks raw bytes and returns the parsed value (for bodies the gateway reads itself).
pub fn parse(raw: &[u8], max_depth: usize) -> Result<serde_json::Value, JsonError> {
    std::str::from_utf8(raw).map_err(|_| JsonError::NotUtf8)?;
    if depth(raw) > max_depth {
        return Err(JsonError::TooDeep);
    }
    serde_json::from_slice(raw).map_err(|_| JsonError::Malformed)
}

/// Checks that `raw` is a JSON object within the depth limit and the document size storaged
/// accepts (the gateway refuses earlier, never later).
pub fn document(raw: Bytes, max_depth: usize) -> Result<Document, JsonError> {
    if raw.len() > photondb_proto::limits::MAX_DOCUMENT_BYTES {
        return Err(JsonError::TooLarge);
    }
    match parse(&raw, max_depth)? {
        serde_json::Value::Object(_) => Ok(Document(raw)),
        _ => Err(JsonError::NotAnObject),
    }
}

/// Re-encodes an already parsed object value (a document inside a batch body).
pub fn document_from_value(value: &serde_json::Value) -> Result<Document, JsonError> {
    match value {
        serde_json::Value::Object(_) => serde_json::to_vec(value)
            .map(|v| Document(Bytes::from(v)))
            .map_err(|_| JsonError::Malformed),
        _ => Err(JsonError::NotAnObject),
    }
}

/// The deepest nesting of arrays and objects, without parsing (strings are skipped).
pub(crate) fn depth(raw: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in raw {
        if in_string {
            (in_string, escaped) = string_step(b, escaped);
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// One byte inside a string: returns (still in the string, next byte is escaped).
fn string_step(b: u8, escaped: bool) -> (bool, bool) {
    match (escaped, b) {
        (true, _) => (true, false),
        (false, b'\\') => (true, true),
        (false, b'"') => (false, false),
        _ => (true, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(s: &[u8]) -> Result<Document, JsonError> {
        document(Bytes::copy_from_slice(s), 4)
    }

    #[test]
    fn documents() {
        assert!(doc(br#"{"a":[1,{"b":"]]]]]]"}]}"#).is_ok());
        assert_eq!(doc(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(doc(b"{\"a\":"), Err(JsonError::Malformed));
        assert_eq!(doc(b"{\"a\":\"\xff\"}"), Err(JsonError::NotUtf8));
        assert_eq!(doc(br#"{"a":[[[[1]]]]}"#), Err(JsonError::TooDeep));
        assert!(doc(br#"{"a":"\"[[[[[["}"#).is_ok());
    }

    #[test]
    fn documents_past_the_wire_limit_are_refused() {
        let max = photondb_proto::limits::MAX_DOCUMENT_BYTES;
        let fits = format!("{{\"a\":\"{}\"}}", "x".repeat(max - 8));
        assert_eq!(fits.len(), max);
        assert!(doc(fits.as_bytes()).is_ok());
        let over = format!("{{\"a\":\"{}\"}}", "x".repeat(max - 7));
        assert_eq!(doc(over.as_bytes()), Err(JsonError::TooLarge));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes are either a bounded object or a refusal; never a panic.
        #[test]
        fn arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(doc) = document(Bytes::from(raw), 8) {
                prop_assert!(depth(doc.bytes()) <= 8);
            }
        }

        #[test]
        fn nesting_past_the_limit_is_refused(n in 9usize..200) {
            let raw = format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
            prop_assert_eq!(document(Bytes::from(raw), 8), Err(JsonError::TooDeep));
        }
    }
}
