//! The engine's operations: databases, tables, documents, scans, batches.

use crate::engine::btree;
use crate::engine::catalog::{self, db_key, doc_key, table_key, tables_prefix};
use crate::engine::engine::Engine;
use crate::engine::error::{Error, What};
use crate::engine::page::{Cell, Value};
use crate::engine::txn::{PageSource, Txn};
use crate::engine::types::{BatchOp, Condition, Document, List, ListPage, Scan, ScanPage};
use crate::engine::validate::{
    self, ENGINE_DROP_TABLES_PER_COMMIT, ENGINE_MAX_BATCH_BYTES, ENGINE_MAX_BATCH_OPERATIONS,
    ENGINE_MAX_KEY_BYTES, ENGINE_MAX_LIST_NAMES, ENGINE_MAX_NAME_BYTES, ENGINE_MAX_SCAN_BYTES,
    ENGINE_MAX_SCAN_ROWS,
};
use crate::engine::{purge, values};

fn check_condition(condition: Condition, actual: Option<u64>) -> Result<(), Error> {
    match condition {
        Condition::Any => Ok(()),
        Condition::IfVersion(v) if actual == Some(v) => Ok(()),
        Condition::IfVersion(v) => Err(Error::VersionMismatch {
            expected: Some(v),
            actual,
        }),
        Condition::IfAbsent if actual.is_none() => Ok(()),
        Condition::IfAbsent => Err(Error::VersionMismatch {
            expected: None,
            actual,
        }),
    }
}

fn apply_put(
    txn: &mut Txn<'_>,
    table: u32,
    key: &str,
    value: &[u8],
    cond: Condition,
) -> Result<(), Error> {
    let key = doc_key(table, key.as_bytes());
    let old = btree::get(txn, &key)?;
    check_condition(cond, old.map(|c| c.version))?;
    let value = values::store(txn, value)?;
    let cell = Cell {
        key,
        version: txn.lsn,
        value,
    };
    if let Some(replaced) = btree::insert(txn, cell)? {
        values::release(txn, &replaced.value)?;
    }
    Ok(())
}

fn apply_delete(txn: &mut Txn<'_>, table: u32, key: &str, cond: Condition) -> Result<(), Error> {
    let key = doc_key(table, key.as_bytes());
    let old = btree::get(txn, &key)?.ok_or(Error::NotFound(What::Document))?;
    check_condition(cond, Some(old.version))?;
    btree::remove(txn, &key)?;
    values::release(txn, &old.value)?;
    Ok(())
}

fn apply_batch_op(txn: &mut Txn<'_>, table: u32, op: &BatchOp) -> Result<(), Error> {
    match op {
        BatchOp::Put {
            key,
            value,
            condition,
        } => apply_put(txn, table, key, value, *condition),
        BatchOp::Delete { key, condition } => apply_delete(txn, table, key, *condition),
    }
}

fn validate_batch(ops: &[BatchOp]) -> Result<(), Error> {
    if ops.is_empty() {
        return Err(Error::InvalidArgument(
            "a batch needs at least one operation".into(),
        ));
    }
    if ops.len() > ENGINE_MAX_BATCH_OPERATIONS {
        return Err(Error::InvalidArgument(format!(
            "a batch may carry at most {ENGINE_MAX_BATCH_OPERATIONS} operations"
        )));
    }
    let mut total = 0;
    for op in ops {
        let (key, value) = match op {
            BatchOp::Put { key, value, .. } => (key, &value[..]),
            BatchOp::Delete { key, .. } => (key, &[][..]),
        };
        validate::key(key)?;
        validate::value(value)?;
        total += key.len() + value.len();
    }
    if total > ENGINE_MAX_BATCH_BYTES {
        return Err(Error::InvalidArgument(
            "a batch may carry at most 4 MiB".into(),
        ));
    }
    Ok(())
}

fn document(
    src: &mut impl PageSource,
    cell: Cell,
    table_prefix_len: usize,
) -> Result<Document, Error> {
    let value = values::load(src, &cell.value)?;
    let key = String::from_utf8_lossy(&cell.key[table_prefix_len..]).into_owned();
    Ok(Document {
        key,
        value,
        version: cell.version,
    })
}

impl Engine {
    /// Creates a database; returns the commit LSN.
    pub fn create_database(&self, db: &str) -> Result<u64, Error> {
        validate::name("database", db)?;
        let owned = db.to_owned();
        let (_, lsn) = self.write(format!("create database {db}"), move |txn| {
            let db = &owned;
            if catalog::db_exists(txn, db)? {
                return Err(Error::AlreadyExists(What::Database));
            }
            let cell = Cell {
                key: db_key(db),
                version: txn.lsn,
                value: Value::Inline(Vec::new()),
            };
            btree::insert(txn, cell)?;
            Ok(())
        })?;
        Ok(lsn)
    }

    /// Drops a database and its tables; returns the LSN of the commit that removed the
    /// database. Each commit unlinks at most `ENGINE_DROP_TABLES_PER_COMMIT` tables (whose
    /// documents are then purged), and the one that leaves none removes the database too: a
    /// database with that many tables or fewer goes in one commit, a larger one in several.
    /// Each commit is atomic, the whole drop is not: after a crash or an error the database
    /// may remain with fewer tables, and dropping it again finishes (storaged/DESIGN.md §3.7).
    pub fn drop_database(&self, db: &str) -> Result<u64, Error> {
        validate::name("database", db)?;
        loop {
            let owned = db.to_owned();
            let summary = format!("drop database {db}");
            let ((ids, dropped), lsn) =
                self.write(summary, move |txn| drop_database_step(txn, &owned))?;
            self.purge_tables(&ids)?;
            if dropped {
                return Ok(lsn);
            }
        }
    }

    /// One page of database names in order: at most `list.limit` (clamped to
    /// `ENGINE_MAX_LIST_NAMES`) after `list.start_after`.
    pub fn list_databases(&self, list: &List) -> Result<ListPage, Error> {
        let limit = check_list(list)?;
        self.read(|v| name_page(v, &catalog::dbs_prefix(), list, limit))
    }

    pub fn create_table(&self, db: &str, table: &str) -> Result<u64, Error> {
        validate::db_table(db, table)?;
        let (db_owned, table_owned) = (db.to_owned(), table.to_owned());
        let (_, lsn) = self.write(format!("create table {db}/{table}"), move |txn| {
            let (db, table) = (&db_owned, &table_owned);
            catalog::require_db(txn, db)?;
            if btree::get(txn, &table_key(db, table))?.is_some() {
                return Err(Error::AlreadyExists(What::Table));
            }
            catalog::new_table(txn, db, table)
        })?;
        Ok(lsn)
    }

    /// Drops a table; returns the LSN of the (atomic) drop. Its pages are freed right after.
    pub fn drop_table(&self, db: &str, table: &str) -> Result<u64, Error> {
        validate::db_table(db, table)?;
        let summary = format!("drop table {db}/{table}");
        let (db, table) = (db.to_owned(), table.to_owned());
        let (id, lsn) = self.write(summary, move |txn| purge::unlink_table(txn, &db, &table))?;
        self.purge_tables(&[id])?;
        Ok(lsn)
    }

    /// One page of a database's table names, paged as `list_databases` is.
    pub fn list_tables(&self, db: &str, list: &List) -> Result<ListPage, Error> {
        validate::name("database", db)?;
        let limit = check_list(list)?;
        self.read(|v| {
            catalog::require_db(v, db)?;
            name_page(v, &tables_prefix(db), list, limit)
        })
    }

    pub fn get(&self, db: &str, table: &str, key: &str) -> Result<Option<Document>, Error> {
        validate::db_table(db, table)?;
        validate::key(key)?;
        self.read(|v| {
            let id = catalog::table_id(v, db, table)?;
            match btree::get(v, &doc_key(id, key.as_bytes()))? {
                Some(cell) => Ok(Some(document(v, cell, 4)?)),
                None => Ok(None),
            }
        })
    }

    /// Writes a document; returns its new version.
    pub fn put(
        &self,
        db: &str,
        table: &str,
        key: &str,
        value: &[u8],
        cond: Condition,
    ) -> Result<u64, Error> {
        validate::db_table(db, table)?;
        validate::key(key)?;
        validate::value(value)?;
        let summary = format!("put {db}/{table}/{key}");
        let (db, table, key, value) = (
            db.to_owned(),
            table.to_owned(),
            key.to_owned(),
            value.to_vec(),
        );
        let (_, lsn) = self.write(summary, move |txn| {
            let id = catalog::table_id(txn, &db, &table)?;
            apply_put(txn, id, &key, &value, cond)
        })?;
        Ok(lsn)
    }

    /// Deletes a document (`NotFound(Document)` if absent); returns the commit LSN.
    pub fn delete(&self, db: &str, table: &str, key: &str, cond: Condition) -> Result<u64, Error> {
        validate::db_table(db, table)?;
        validate::key(key)?;
        let summary = format!("delete {db}/{table}/{key}");
        let (db, table, key) = (db.to_owned(), table.to_owned(), key.to_owned());
        let (_, lsn) = self.write(summary, move |txn| {
            let id = catalog::table_id(txn, &db, &table)?;
            apply_delete(txn, id, &key, cond)
        })?;
        Ok(lsn)
    }

    /// All puts and deletes in one commit, or none; every write's version is the returned LSN.
    pub fn batch(&self, db: &str, table: &str, ops: Vec<BatchOp>) -> Result<u64, Error> {
        validate::db_table(db, table)?;
        validate_batch(&ops)?;
        let summary = format!("batch of {} on {db}/{table}", ops.len());
        let (db, table) = (db.to_owned(), table.to_owned());
        let (_, lsn) = self.write(summary, move |txn| {
            let id = catalog::table_id(txn, &db, &table)?;
            ops.iter().try_for_each(|op| apply_batch_op(txn, id, op))
        })?;
        Ok(lsn)
    }

    /// One page of documents in key order: at most `limit` documents (clamped to
    /// `ENGINE_MAX_SCAN_ROWS`), and it ends early once their values reach
    /// `ENGINE_MAX_SCAN_BYTES` (so one request cannot pull gigabytes).
    pub fn scan(&self, db: &str, table: &str, scan: &Scan) -> Result<ScanPage, Error> {
        validate::db_table(db, table)?;
        check_scan(scan)?;
        self.read(|v| {
            let id = catalog::table_id(v, db, table)?;
            let prefix = doc_key(id, scan.prefix.as_bytes());
            let after = scan.start_after.as_ref().map(|a| doc_key(id, a.as_bytes()));
            let limit = scan.limit.min(ENGINE_MAX_SCAN_ROWS);
            let cells = btree::page(v, &prefix, after, limit)?;
            page_of(v, cells, limit)
        })
    }
}

/// Loads documents until `limit` or the byte budget; `next_start_after` if any remain.
fn page_of(v: &mut impl PageSource, cells: Vec<Cell>, limit: usize) -> Result<ScanPage, Error> {
    let available = cells.len();
    let mut docs = Vec::new();
    let mut bytes = 0;
    for cell in cells.into_iter().take(limit) {
        let doc = document(v, cell, 4)?;
        bytes += doc.value.len();
        docs.push(doc);
        if bytes >= ENGINE_MAX_SCAN_BYTES {
            break;
        }
    }
    let more = available > docs.len();
    let next_start_after = if more {
        docs.last().map(|d| d.key.clone())
    } else {
        None
    };
    Ok(ScanPage {
        docs,
        next_start_after,
    })
}

/// One commit of a database drop: unlinks the database's first tables, at most
/// `ENGINE_DROP_TABLES_PER_COMMIT`, and removes the database once none remain. The check
/// that none remain and the removal are one commit, so a table created meanwhile is never
/// left behind: it is unlinked by a later step. Returns the unlinked ids and whether the
/// database is gone.
fn drop_database_step(txn: &mut Txn<'_>, db: &str) -> Result<(Vec<u32>, bool), Error> {
    catalog::require_db(txn, db)?;
    let prefix = tables_prefix(db);
    let (tables, more) = catalog::names(txn, &prefix, None, ENGINE_DROP_TABLES_PER_COMMIT)?;
    let ids = tables
        .iter()
        .map(|table| purge::unlink_table(txn, db, table))
        .collect::<Result<Vec<_>, _>>()?;
    if !more {
        btree::remove(txn, &db_key(db))?;
    }
    Ok((ids, !more))
}

fn name_page(
    v: &mut impl PageSource,
    prefix: &[u8],
    list: &List,
    limit: usize,
) -> Result<ListPage, Error> {
    let (names, more) = catalog::names(v, prefix, list.start_after.as_deref(), limit)?;
    let next_start_after = if more { names.last().cloned() } else { None };
    Ok(ListPage {
        names,
        next_start_after,
    })
}

/// A list's page size, clamped to `ENGINE_MAX_LIST_NAMES`; its cursor is no longer than a
/// name.
fn check_list(list: &List) -> Result<usize, Error> {
    if list.limit == 0 {
        return Err(Error::InvalidArgument("list limit must be positive".into()));
    }
    if list
        .start_after
        .as_ref()
        .is_some_and(|a| a.len() > ENGINE_MAX_NAME_BYTES)
    {
        return Err(Error::InvalidArgument(format!(
            "list start_after is at most {ENGINE_MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(list.limit.min(ENGINE_MAX_LIST_NAMES))
}

fn check_scan(scan: &Scan) -> Result<(), Error> {
    if scan.limit == 0 {
        return Err(Error::InvalidArgument("scan limit must be positive".into()));
    }
    let too_long = |s: &str| s.len() > ENGINE_MAX_KEY_BYTES;
    if too_long(&scan.prefix) || scan.start_after.as_deref().is_some_and(too_long) {
        return Err(Error::InvalidArgument(format!(
            "scan prefix and start_after are at most {ENGINE_MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}
