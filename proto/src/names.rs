//! The shape of identifiers on the wire: database and table names (`[a-z0-9_-]{1,64}`) and
//! document keys (1–512 bytes of UTF-8). Holding a [`Name`] or a [`Key`] means the check passed;
//! the gateway and storaged both check with these, and nothing else defines the rule.

use std::fmt;

/// The longest database or table name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// The longest document key, in bytes of UTF-8.
pub const MAX_KEY_BYTES: usize = 512;

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    BadName,
    BadKey,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::BadName => "names must match [a-z0-9_-]{1,64}",
            NameError::BadKey => "keys must be 1 to 512 bytes of UTF-8",
        })
    }
}

impl std::error::Error for NameError {}

/// Whether `s` is a valid database or table name.
pub fn is_name(s: &str) -> bool {
    (1..=MAX_NAME_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Whether `s` is a valid document key (a `&str` is UTF-8 already).
pub fn is_key(s: &str) -> bool {
    (1..=MAX_KEY_BYTES).contains(&s.len())
}

/// A database or table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        is_name(s)
            .then(|| Self(s.to_owned()))
            .ok_or(NameError::BadName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        is_key(s)
            .then(|| Self(s.to_owned()))
            .ok_or(NameError::BadKey)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A table within a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub db: Name,
    pub table: Name,
}

impl TableRef {
    pub fn parse(db: &str, table: &str) -> Result<Self, NameError> {
        Ok(Self {
            db: Name::parse(db)?,
            table: Name::parse(table)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::parse("users_2-b").is_ok());
        assert!(Name::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Users", "a.b", "a/b", "é", &"a".repeat(65)] {
            assert_eq!(Name::parse(bad), Err(NameError::BadName), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(Key::parse("a/b c é").is_ok());
        assert!(Key::parse(&"é".repeat(256)).is_ok());
        assert_eq!(Key::parse(""), Err(NameError::BadKey));
        assert_eq!(Key::parse(&"a".repeat(513)), Err(NameError::BadKey));
    }
}
