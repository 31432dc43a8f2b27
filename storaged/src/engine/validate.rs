//! The engine's own limits, set by its physical layout, and the argument checks that enforce
//! them. The wire contract is storaged's business: it may be tighter, never looser (storaged
//! checks that at compile time against these constants).

use crate::engine::error::Error;

/// The longest document key: a leaf and an interior node must still hold several of them.
pub const ENGINE_MAX_KEY_BYTES: usize = 512;
/// The largest value (its overflow chain is built and freed inside one transaction).
pub const ENGINE_MAX_VALUE_BYTES: usize = 1 << 20;
/// The longest database or table name: a catalog key holds two of them and must fit as a key.
pub const ENGINE_MAX_NAME_BYTES: usize = 64;
/// The keys and values of one batch together: one batch is one WAL record in one segment.
pub const ENGINE_MAX_BATCH_BYTES: usize = 4 << 20;
/// Operations in one batch: each may copy its own leaf under the tree lock.
pub const ENGINE_MAX_BATCH_OPERATIONS: usize = 1_000;
/// The most documents one scan page holds; a larger limit is clamped to it.
pub const ENGINE_MAX_SCAN_ROWS: usize = 10_000;
/// A scan page ends after the document that brings its values to this many bytes.
pub const ENGINE_MAX_SCAN_BYTES: usize = 4 << 20;
/// The most names one page of databases or tables holds; a larger limit is clamped to it.
pub const ENGINE_MAX_LIST_NAMES: usize = 10_000;
/// Tables one commit of a database drop unlinks: each becomes a pending purge entry, so this
/// bounds the drop's WAL records, whatever the number of tables.
pub const ENGINE_DROP_TABLES_PER_COMMIT: usize = 256;

/// A table's catalog key (`0u32 ++ "t\0" ++ db ++ "\0" ++ table`) fits where a document key does.
const _: () = assert!(2 + 2 * ENGINE_MAX_NAME_BYTES < ENGINE_MAX_KEY_BYTES);

/// Names are nonempty, bounded, and free of the catalog's separator (`\0`). Which characters a
/// name may hold is the wire contract's rule, checked by storaged's service, not here.
pub(crate) fn name(kind: &str, name: &str) -> Result<(), Error> {
    let ok = (1..=ENGINE_MAX_NAME_BYTES).contains(&name.len()) && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{kind} name must be 1 to {ENGINE_MAX_NAME_BYTES} bytes without NUL"
        )))
    }
}

pub(crate) fn key(key: &str) -> Result<(), Error> {
    if (1..=ENGINE_MAX_KEY_BYTES).contains(&key.len()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "key must be 1 to {ENGINE_MAX_KEY_BYTES} bytes of UTF-8"
        )))
    }
}

pub(crate) fn value(value: &[u8]) -> Result<(), Error> {
    if value.len() <= ENGINE_MAX_VALUE_BYTES {
        Ok(())
    } else {
        Err(Error::InvalidArgument("value must be at most 1 MiB".into()))
    }
}

pub(crate) fn db_table(db: &str, table: &str) -> Result<(), Error> {
    name("database", db)?;
    name("table", table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_free_of_the_catalog_separator() {
        assert!(name("database", "a").is_ok());
        assert!(name("database", &"a".repeat(ENGINE_MAX_NAME_BYTES)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(ENGINE_MAX_NAME_BYTES + 1),
            "a\0b".into(),
        ] {
            assert!(
                matches!(name("database", &bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_and_values_are_bounded() {
        assert!(key(&"k".repeat(ENGINE_MAX_KEY_BYTES)).is_ok());
        assert!(key("").is_err());
        assert!(key(&"k".repeat(ENGINE_MAX_KEY_BYTES + 1)).is_err());
        assert!(value(&vec![0; ENGINE_MAX_VALUE_BYTES]).is_ok());
        assert!(value(&vec![0; ENGINE_MAX_VALUE_BYTES + 1]).is_err());
    }
}
