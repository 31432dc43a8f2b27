//! The wire contract as storaged enforces it: every request is checked against
//! `photondb_proto`'s name rules and limits before the engine sees it, and each wire limit is
//! tied at compile time to the engine's physical limit it must not exceed.

use std::fmt;

use photondb_proto::limits::{
    DEFAULT_SCAN_LIMIT, MAX_BATCH_BYTES, MAX_BATCH_OPERATIONS, MAX_DOCUMENT_BYTES, MAX_LIST_LIMIT,
    MAX_SCAN_LIMIT, MAX_SCAN_PAGE_BYTES,
};
use photondb_proto::names::{Key, MAX_KEY_BYTES, MAX_NAME_BYTES, Name, TableRef};
use photondb_proto::v1 as pb;

use crate::engine;

const _: () = assert!(MAX_KEY_BYTES <= engine::ENGINE_MAX_KEY_BYTES);
const _: () = assert!(MAX_NAME_BYTES <= engine::ENGINE_MAX_NAME_BYTES);
const _: () = assert!(MAX_DOCUMENT_BYTES <= engine::ENGINE_MAX_VALUE_BYTES);
const _: () = assert!(MAX_BATCH_OPERATIONS <= engine::ENGINE_MAX_BATCH_OPERATIONS);
const _: () = assert!(MAX_BATCH_BYTES <= engine::ENGINE_MAX_BATCH_BYTES);
const _: () = assert!(MAX_SCAN_LIMIT <= engine::ENGINE_MAX_SCAN_ROWS);
const _: () = assert!(MAX_SCAN_PAGE_BYTES <= engine::ENGINE_MAX_SCAN_BYTES);
const _: () = assert!(MAX_LIST_LIMIT <= engine::ENGINE_MAX_LIST_NAMES);

/// Why a request breaks the wire contract (answered `INVALID_ARGUMENT` with this text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    MissingTable,
    /// A database or table name (`"database"` or `"table"`) of the wrong shape.
    Name(&'static str),
    Key,
    /// A scan's prefix or `start_after` longer than a key can be.
    ScanBound,
    /// A list's `start_after` that is neither empty nor a name.
    ListBound,
    DocumentTooLarge,
    EmptyBatch,
    TooManyOperations,
    BatchTooLarge,
    EmptyOperation,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::MissingTable => f.write_str("table reference is required"),
            Invalid::Name(what) => {
                write!(f, "{what} name must match [a-z0-9_-]{{1,{MAX_NAME_BYTES}}}")
            }
            Invalid::Key => write!(f, "key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8"),
            Invalid::ScanBound => write!(
                f,
                "scan prefix and start_after are at most {MAX_KEY_BYTES} bytes"
            ),
            Invalid::ListBound => write!(
                f,
                "list start_after must be empty or match [a-z0-9_-]{{1,{MAX_NAME_BYTES}}}"
            ),
            Invalid::DocumentTooLarge => {
                write!(f, "a document may be at most {MAX_DOCUMENT_BYTES} bytes")
            }
            Invalid::EmptyBatch => f.write_str("a batch needs at least one operation"),
            Invalid::TooManyOperations => write!(
                f,
                "a batch may carry at most {MAX_BATCH_OPERATIONS} operations"
            ),
            Invalid::BatchTooLarge => write!(
                f,
                "a batch's keys and documents may be at most {MAX_BATCH_BYTES} bytes"
            ),
            Invalid::EmptyOperation => f.write_str("batch operation without put or delete"),
        }
    }
}

impl std::error::Error for Invalid {}

pub fn name(what: &'static str, text: &str) -> Result<Name, Invalid> {
    Name::parse(text).map_err(|_| Invalid::Name(what))
}

pub fn database(text: &str) -> Result<Name, Invalid> {
    name("database", text)
}

pub fn table(table: Option<pb::TableRef>) -> Result<TableRef, Invalid> {
    let t = table.ok_or(Invalid::MissingTable)?;
    Ok(TableRef {
        db: database(&t.db)?,
        table: name("table", &t.table)?,
    })
}

pub fn key(text: &str) -> Result<Key, Invalid> {
    Key::parse(text).map_err(|_| Invalid::Key)
}

pub fn document(value: &[u8]) -> Result<(), Invalid> {
    if value.len() <= MAX_DOCUMENT_BYTES {
        Ok(())
    } else {
        Err(Invalid::DocumentTooLarge)
    }
}

/// The page size a scan asks for: the default for 0, at most the wire's maximum.
pub fn scan_limit(requested: u32) -> usize {
    match usize::try_from(requested) {
        Ok(0) => DEFAULT_SCAN_LIMIT,
        Ok(n) => n.min(MAX_SCAN_LIMIT),
        Err(_) => MAX_SCAN_LIMIT,
    }
}

/// A scan's prefix and `start_after` (empty: none) are key prefixes, so no longer than a key.
pub fn scan_bounds(prefix: &str, start_after: &str) -> Result<(), Invalid> {
    if prefix.len() <= MAX_KEY_BYTES && start_after.len() <= MAX_KEY_BYTES {
        Ok(())
    } else {
        Err(Invalid::ScanBound)
    }
}

/// A list page: after `start_after` (empty: from the first name; otherwise a name, as every
/// `next_start_after` is), at most `limit` names (0, or more than `MAX_LIST_LIMIT`: that many;
/// the largest page is the default so that a client that never pages sees the most).
pub fn list(start_after: &str, limit: u32) -> Result<engine::List, Invalid> {
    let start_after = match start_after {
        "" => None,
        name => Some(
            Name::parse(name)
                .map_err(|_| Invalid::ListBound)?
                .to_string(),
        ),
    };
    let limit = match usize::try_from(limit) {
        Ok(0) | Err(_) => MAX_LIST_LIMIT,
        Ok(n) => n.min(MAX_LIST_LIMIT),
    };
    Ok(engine::List { start_after, limit })
}

/// Ends a page once its documents reach `MAX_SCAN_PAGE_BYTES` (the one that crosses it stays);
/// the engine's own budget is at least as large, so this only ever shortens a page.
pub fn scan_page(mut page: engine::ScanPage) -> engine::ScanPage {
    let mut bytes = 0;
    let full = page.docs.iter().position(|d| {
        bytes += d.value.len();
        bytes >= MAX_SCAN_PAGE_BYTES
    });
    if let Some(last) = full.filter(|&i| i + 1 < page.docs.len()) {
        page.docs.truncate(last + 1);
        page.next_start_after = page.docs.last().map(|d| d.key.clone());
    }
    page
}

/// A batch: 1 to `MAX_BATCH_OPERATIONS` operations, valid keys and documents, and at most
/// `MAX_BATCH_BYTES` of keys and documents together.
pub fn batch(ops: &[engine::BatchOp]) -> Result<(), Invalid> {
    if ops.is_empty() {
        return Err(Invalid::EmptyBatch);
    }
    if ops.len() > MAX_BATCH_OPERATIONS {
        return Err(Invalid::TooManyOperations);
    }
    let mut total = 0usize;
    for op in ops {
        let (k, value) = match op {
            engine::BatchOp::Put { key, value, .. } => (key, &value[..]),
            engine::BatchOp::Delete { key, .. } => (key, &[][..]),
        };
        key(k)?;
        document(value)?;
        total = total.saturating_add(k.len() + value.len());
    }
    if total > MAX_BATCH_BYTES {
        return Err(Invalid::BatchTooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{BatchOp, Condition, Document, ScanPage};

    #[test]
    fn names_follow_the_wire_shape_not_just_the_engine_bound() {
        assert!(database("app_2-b").is_ok());
        // The engine takes these (nonempty, short, no NUL); the wire contract does not.
        for bad in ["Bad Name", "UPPER", "a.b", "a/b", "é"] {
            assert_eq!(database(bad), Err(Invalid::Name("database")), "{bad}");
        }
        assert_eq!(
            Invalid::Name("table").to_string(),
            "table name must match [a-z0-9_-]{1,64}"
        );
        let t = |db: &str, table: &str| {
            Some(pb::TableRef {
                db: db.into(),
                table: table.into(),
            })
        };
        assert!(table(t("app", "users")).is_ok());
        assert_eq!(table(t("app", "Users")), Err(Invalid::Name("table")));
        assert_eq!(table(t("App", "users")), Err(Invalid::Name("database")));
        assert_eq!(table(None), Err(Invalid::MissingTable));
    }

    #[test]
    fn keys_documents_and_scan_bounds() {
        assert!(key(&"é".repeat(MAX_KEY_BYTES / 2)).is_ok());
        assert_eq!(key(""), Err(Invalid::Key));
        assert_eq!(key(&"k".repeat(MAX_KEY_BYTES + 1)), Err(Invalid::Key));
        assert!(document(&vec![0; MAX_DOCUMENT_BYTES]).is_ok());
        assert_eq!(
            document(&vec![0; MAX_DOCUMENT_BYTES + 1]),
            Err(Invalid::DocumentTooLarge)
        );
        assert!(scan_bounds("", "").is_ok());
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(scan_bounds(&long, ""), Err(Invalid::ScanBound));
        assert_eq!(scan_bounds("", &long), Err(Invalid::ScanBound));
    }

    #[test]
    fn scan_limits_default_and_cap() {
        assert_eq!(scan_limit(0), DEFAULT_SCAN_LIMIT);
        assert_eq!(scan_limit(7), 7);
        assert_eq!(scan_limit(u32::MAX), MAX_SCAN_LIMIT);
    }

    #[test]
    fn list_pages_default_to_the_largest_and_take_a_name_as_cursor() {
        let page = |after: &str, limit| list(after, limit).map(|l| (l.start_after, l.limit));
        assert_eq!(page("", 0), Ok((None, MAX_LIST_LIMIT)));
        assert_eq!(page("app", 7), Ok((Some("app".into()), 7)));
        assert_eq!(page("", u32::MAX), Ok((None, MAX_LIST_LIMIT)));
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        for bad in ["App", "a.b", long.as_str()] {
            assert_eq!(page(bad, 0), Err(Invalid::ListBound), "{bad}");
        }
    }

    #[test]
    fn a_scan_page_ends_after_the_document_that_crosses_the_byte_budget() {
        let doc = |i: usize| Document {
            key: format!("k{i}"),
            value: vec![0; MAX_SCAN_PAGE_BYTES / 2],
            version: 1,
        };
        let page = ScanPage {
            docs: (0..5).map(doc).collect(),
            next_start_after: None,
        };
        let page = scan_page(page);
        assert_eq!(page.docs.len(), 2);
        assert_eq!(page.next_start_after.as_deref(), Some("k1"));
        let small = ScanPage {
            docs: vec![doc(0)],
            next_start_after: Some("k0".into()),
        };
        assert_eq!(scan_page(small.clone()), small);
    }

    #[test]
    fn batches_are_bounded_in_count_and_bytes() {
        let put = |key: String, len: usize| BatchOp::Put {
            key,
            value: vec![0; len],
            condition: Condition::Any,
        };
        assert_eq!(batch(&[]), Err(Invalid::EmptyBatch));
        let many: Vec<_> = (0..=MAX_BATCH_OPERATIONS)
            .map(|i| put(format!("k{i}"), 1))
            .collect();
        assert_eq!(batch(&many), Err(Invalid::TooManyOperations));
        assert!(batch(&many[..MAX_BATCH_OPERATIONS]).is_ok());
        let big: Vec<_> = (0..5)
            .map(|i| put(format!("k{i}"), MAX_DOCUMENT_BYTES))
            .collect();
        assert_eq!(batch(&big), Err(Invalid::BatchTooLarge));
        assert_eq!(
            batch(&[put(String::new(), 1)]),
            Err(Invalid::Key),
            "every key is checked"
        );
        assert_eq!(
            batch(&[put("k".into(), MAX_DOCUMENT_BYTES + 1)]),
            Err(Invalid::DocumentTooLarge)
        );
    }
}
