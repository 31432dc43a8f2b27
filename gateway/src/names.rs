//! Validated identifiers: database and table names (`[a-z0-9_-]{1,64}`) and document keys
//! (1–512 bytes of UTF-8). Holding one of these types means the check passed.

use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    BadName,
    BadKey,
}

/// A database or table name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'));
        ok.then(|| Self(s.to_owned())).ok_or(NameError::BadName)
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

/// A document key: 1–512 bytes of UTF-8 (a `&str` is UTF-8 already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub const MAX_BYTES: usize = 512;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let ok = (1..=Self::MAX_BYTES).contains(&s.len());
        ok.then(|| Self(s.to_owned())).ok_or(NameError::BadKey)
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
