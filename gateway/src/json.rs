//! Pipeline step 10 for documents: JSON that is UTF-8, well-formed, bounded in depth, an
//! object, and without repeated member names. The client's bytes are forwarded unchanged once
//! they pass, and come back unchanged: nothing here builds a `serde_json::Value`.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use bytes::Bytes;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::errors::Refusal;

/// Why a JSON payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// Larger than the wire contract's largest document (`MAX_DOCUMENT_BYTES`).
    TooLarge,
    NotUtf8,
    TooDeep,
    Malformed,
    /// An object repeats a member name (`{"a":1,"a":2}`, or `"\u0061"` for `"a"`): parsers
    /// disagree on which one counts, so such JSON is never stored.
    DuplicateKey,
    NotAnObject,
}

impl From<JsonError> for Refusal {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::TooLarge => Self::PayloadTooLarge,
            JsonError::NotUtf8 => Self::JsonNotUtf8,
            JsonError::TooDeep => Self::JsonTooDeep,
            JsonError::Malformed => Self::JsonMalformed,
            JsonError::DuplicateKey => Self::JsonDuplicateKey,
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

/// Checks a JSON body the gateway reads itself (a batch envelope) by the rules for documents:
/// UTF-8, within `max_depth`, well-formed, no repeated member names.
pub fn check(raw: &[u8], max_depth: usize) -> Result<(), JsonError> {
    walk(raw, max_depth).map(|_| ())
}

/// Checks that `raw` is a JSON object within the depth limit and the document size storaged
/// accepts (the gateway refuses earlier, never later).
pub fn document(raw: Bytes, max_depth: usize) -> Result<Document, JsonError> {
    if raw.len() > photondb_proto::limits::MAX_DOCUMENT_BYTES {
        return Err(JsonError::TooLarge);
    }
    match walk(&raw, max_depth)? {
        Top::Object => Ok(Document(raw)),
        Top::Other => Err(JsonError::NotAnObject),
    }
}

/// One pass over `raw`: the checks of [`check`], and what kind of value it is.
fn walk(raw: &[u8], max_depth: usize) -> Result<Top, JsonError> {
    let text = std::str::from_utf8(raw).map_err(|_| JsonError::NotUtf8)?;
    // Before the walk, which recurses once per level: bounded here, it cannot run deep.
    if depth(raw) > max_depth {
        return Err(JsonError::TooDeep);
    }
    let duplicate = Cell::new(false);
    let seed = Walk {
        duplicate: &duplicate,
    };
    let mut parser = serde_json::Deserializer::from_str(text);
    let walked = seed
        .deserialize(&mut parser)
        .and_then(|top| parser.end().map(|()| top));
    walked.map_err(|_| {
        if duplicate.get() {
            JsonError::DuplicateKey
        } else {
            JsonError::Malformed
        }
    })
}

/// What a JSON text is at its top.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    Object,
    Other,
}

/// Walks one JSON value as `serde_json::Value` would parse it (same syntax, same number
/// ranges) but keeps nothing except, per object, the set of its member names.
#[derive(Clone, Copy)]
struct Walk<'a> {
    /// Set when the walk stops at a repeated name: serde's error cannot say why it stopped.
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Top;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Top, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(Top::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        // A hash set (SipHash, random keys): an object of many names stays linear.
        let mut names = HashSet::new();
        while let Some(name) = map.next_key_seed(Name)? {
            if !names.insert(name) {
                self.duplicate.set(true);
                return Err(de::Error::custom("repeated member name"));
            }
            map.next_value_seed(self)?;
        }
        Ok(Top::Object)
    }
}

/// A member name, unescaped (so `"\u0061"` equals `"a"`); borrowed unless it had escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E: de::Error>(self, name: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(name.to_owned()))
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
    fn repeated_member_names_are_refused() {
        let repeated = [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            r#"{"\u00e9":1,"é":2}"#,
            r#"{"\n":1,"\u000A":2}"#,
            r#"{"a":1,"b":{},"a":{}}"#,
            r#"{"x":{"b":1,"b":2}}"#,
            r#"{"x":[{"c":1},{"c":1,"c":1}]}"#,
            r#"[{"a":1,"a":1}]"#,
        ];
        for raw in repeated {
            assert_eq!(doc(raw.as_bytes()), Err(JsonError::DuplicateKey), "{raw}");
            assert_eq!(
                check(raw.as_bytes(), 4),
                Err(JsonError::DuplicateKey),
                "{raw}"
            );
        }
        // One name in several objects, or names that differ only in case, are not repeats.
        assert!(doc(br#"{"a":{"a":1},"b":[{"a":1},{"a":2}],"A":0,"\u0041a":0}"#).is_ok());
        assert_eq!(check(br#"{"a":1,"a":"#, 4), Err(JsonError::DuplicateKey));
        assert_eq!(check(br#"{"a":1,"b":"#, 4), Err(JsonError::Malformed));
    }

    #[test]
    fn repeats_are_a_400_of_their_own() {
        let d = Refusal::from(JsonError::DuplicateKey).describe();
        assert_eq!(
            (d.status.as_u16(), d.code, d.grpc),
            (400, "json_duplicate_key", tonic::Code::InvalidArgument)
        );
    }

    #[test]
    fn accepted_documents_keep_their_bytes() {
        let raw = concat!(
            r#"{"n":12345678901234567890123,"z":-0,"f":1E2,"g":-1.5e-300,"#,
            r#""s":"\u00e9\n\"\/\ud83d\ude00","é":true, "sp" : [ 1 , null ] }"#,
        );
        assert_eq!(&doc(raw.as_bytes()).unwrap().bytes()[..], raw.as_bytes());
        assert_eq!(&doc(b" {}\n").unwrap().bytes()[..], b" {}\n");
        assert_eq!(doc(b"12"), Err(JsonError::NotAnObject));
        // As before: numbers past f64's range, lone surrogates and raw control characters.
        assert_eq!(doc(br#"{"a":1e400}"#), Err(JsonError::Malformed));
        assert_eq!(doc(br#"{"a":"\ud800"}"#), Err(JsonError::Malformed));
        assert_eq!(doc(b"{\"a\":\"\x01\"}"), Err(JsonError::Malformed));
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

        /// Refused as a repeat exactly when two names of one object are equal once unescaped.
        #[test]
        fn repeats_are_found_escaped_or_not(
            names in proptest::collection::vec("[ab]{0,2}", 1..6),
            escape in any::<bool>(),
        ) {
            let member = |(i, name): (usize, &String)| {
                let written = if escape && i % 2 == 1 { escaped(name) } else { name.clone() };
                format!("\"{written}\":{i}")
            };
            let members: Vec<String> = names.iter().enumerate().map(member).collect();
            let raw = format!("{{{}}}", members.join(","));
            let unique = names.iter().collect::<HashSet<_>>().len() == names.len();
            let expected = if unique { Ok(()) } else { Err(JsonError::DuplicateKey) };
            prop_assert_eq!(check(raw.as_bytes(), 8), expected);
        }

        #[test]
        fn nesting_past_the_limit_is_refused(n in 9usize..200) {
            let raw = format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
            prop_assert_eq!(document(Bytes::from(raw), 8), Err(JsonError::TooDeep));
        }
    }

    /// Every character as a `\uXXXX` escape (the names tested are ASCII).
    fn escaped(name: &str) -> String {
        name.chars()
            .map(|c| format!("\\u{:04x}", u32::from(c)))
            .collect()
    }
}
