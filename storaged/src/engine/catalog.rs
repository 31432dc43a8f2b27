//! The catalog: databases and tables, stored in the tree under the reserved table id 0.
//!
//! Keys: `0u32 BE ++ "d\0" ++ db` (empty value) and `0u32 BE ++ "t\0" ++ db ++ "\0" ++ table`
//! (value: the table id, u32 LE). Names cannot contain `\0`, so a prefix never spans names.
//! Documents live under `table_id BE ++ key`, so one table's keys are contiguous and ordered.

use crate::engine::btree::{self, Range};
use crate::engine::bytes::get_u32;
use crate::engine::error::{Error, StorageError, What};
use crate::engine::page::{Cell, Value};
use crate::engine::txn::{PageSource, Txn};

const CATALOG_TABLE: u32 = 0;

fn catalog_key(parts: &[&[u8]]) -> Vec<u8> {
    let mut key = CATALOG_TABLE.to_be_bytes().to_vec();
    for part in parts {
        key.extend_from_slice(part);
    }
    key
}

pub(crate) fn db_key(db: &str) -> Vec<u8> {
    catalog_key(&[b"d\0", db.as_bytes()])
}

pub(crate) fn dbs_prefix() -> Vec<u8> {
    catalog_key(&[b"d\0"])
}

pub(crate) fn table_key(db: &str, table: &str) -> Vec<u8> {
    catalog_key(&[b"t\0", db.as_bytes(), b"\0", table.as_bytes()])
}

pub(crate) fn tables_prefix(db: &str) -> Vec<u8> {
    catalog_key(&[b"t\0", db.as_bytes(), b"\0"])
}

pub(crate) fn doc_key(table_id: u32, key: &[u8]) -> Vec<u8> {
    let mut out = table_id.to_be_bytes().to_vec();
    out.extend_from_slice(key);
    out
}

/// Every cell whose key starts with `prefix`.
pub(crate) fn all_with_prefix(
    src: &mut impl PageSource,
    prefix: &[u8],
) -> Result<Vec<Cell>, StorageError> {
    btree::scan(
        src,
        &Range {
            from: prefix,
            inclusive: true,
            prefix,
            limit: usize::MAX,
        },
    )
}

pub(crate) fn db_exists(src: &mut impl PageSource, db: &str) -> Result<bool, Error> {
    Ok(btree::get(src, &db_key(db))?.is_some())
}

pub(crate) fn require_db(src: &mut impl PageSource, db: &str) -> Result<(), Error> {
    if db_exists(src, db)? {
        Ok(())
    } else {
        Err(Error::NotFound(What::Database))
    }
}

/// The id of a table, or which of database and table is missing.
pub(crate) fn table_id(src: &mut impl PageSource, db: &str, table: &str) -> Result<u32, Error> {
    match btree::get(src, &table_key(db, table))? {
        Some(Cell {
            value: Value::Inline(bytes),
            ..
        }) if bytes.len() == 4 => Ok(get_u32(&bytes, 0)),
        Some(_) => {
            Err(StorageError::corrupted(None, "catalog entry for a table is malformed").into())
        }
        None => {
            require_db(src, db)?;
            Err(Error::NotFound(What::Table))
        }
    }
}

/// Up to `limit` names under a catalog prefix after `after`, in order (the same page as a
/// scan's, `btree::page`), and whether more follow.
pub(crate) fn names(
    src: &mut impl PageSource,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, bool), Error> {
    let after = after.map(|a| [prefix, a.as_bytes()].concat());
    let cells = btree::page(src, prefix, after, limit)?;
    let more = cells.len() > limit;
    let names = cells
        .into_iter()
        .take(limit)
        .map(|c| String::from_utf8_lossy(&c.key[prefix.len()..]).into_owned());
    Ok((names.collect(), more))
}

pub(crate) fn new_table(txn: &mut Txn<'_>, db: &str, table: &str) -> Result<u32, Error> {
    let id = txn.meta.next_table_id;
    txn.meta.next_table_id = id
        .checked_add(1)
        .ok_or_else(|| Error::InvalidArgument("out of table ids".into()))?;
    let cell = Cell {
        key: table_key(db, table),
        version: txn.lsn,
        value: Value::Inline(id.to_le_bytes().to_vec()),
    };
    btree::insert(txn, cell)?;
    Ok(id)
}
