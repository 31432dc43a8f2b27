//! Dropping tables in two steps, so a drop never has to fit in one WAL record.
//!
//! The drop itself is one small atomic commit: the table's catalog entry is replaced by a
//! "pending purge" entry (`0u32 BE ++ "g\0" ++ table_id BE`). Its documents, now unreachable by
//! name (table ids are never reused), are then deleted in bounded commits, and the pending entry
//! goes last; small tables share a commit. A crash in between leaves the entry, and the next
//! open finishes the purge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::engine::btree::{self, Range};
use crate::engine::bytes::get_u32;
use crate::engine::catalog::{self, table_key};
use crate::engine::engine::Engine;
use crate::engine::error::Error;
use crate::engine::page::{Cell, Value};
use crate::engine::txn::Txn;
use crate::engine::values;

/// Documents deleted per purge commit.
const PURGE_CHUNK: usize = 256;

fn pending_prefix() -> Vec<u8> {
    let mut key = 0u32.to_be_bytes().to_vec();
    key.extend_from_slice(b"g\0");
    key
}

fn pending_key(id: u32) -> Vec<u8> {
    let mut key = pending_prefix();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Removes a table's name and marks its id for purging; returns the id.
pub(crate) fn unlink_table(txn: &mut Txn<'_>, db: &str, table: &str) -> Result<u32, Error> {
    let id = catalog::table_id(txn, db, table)?;
    btree::remove(txn, &table_key(db, table))?;
    let cell = Cell {
        key: pending_key(id),
        version: txn.lsn,
        value: Value::Inline(Vec::new()),
    };
    btree::insert(txn, cell)?;
    Ok(id)
}

/// Deletes up to `budget` of a dropped table's documents; true when none remain (then its
/// pending entry goes too).
fn purge_table(txn: &mut Txn<'_>, id: u32, budget: usize) -> Result<(bool, usize), Error> {
    let prefix = id.to_be_bytes();
    let range = Range {
        from: &prefix,
        inclusive: true,
        prefix: &prefix,
        limit: budget,
    };
    let cells = btree::scan(txn, &range)?;
    for cell in &cells {
        btree::remove(txn, &cell.key)?;
        values::release(txn, &cell.value)?;
    }
    let finished = cells.len() < budget;
    if finished {
        btree::remove(txn, &pending_key(id))?;
    }
    Ok((finished, cells.len()))
}

/// One purge commit: deletes documents of the dropped tables in order, `PURGE_CHUNK` in all
/// (a finished table's pending entry counts as one, so many small tables share a commit);
/// returns how many of the tables it finished. `current` holds the id of the table being
/// purged, so a failure can name it.
fn purge_chunk(txn: &mut Txn<'_>, ids: &[u32], current: &AtomicU32) -> Result<usize, Error> {
    let mut budget = PURGE_CHUNK;
    let mut finished = 0;
    for &id in ids {
        current.store(id, Ordering::Relaxed);
        let (done, deleted) = purge_table(txn, id, budget)?;
        if !done {
            break;
        }
        finished += 1;
        budget -= deleted + 1;
        if budget == 0 {
            break;
        }
    }
    Ok(finished)
}

/// Why finishing the interrupted drops at open stopped: reading the catalog to look for
/// pending purges failed (whether or not any drop was interrupted), or the purge of a pending
/// table did.
#[derive(Debug)]
pub(crate) enum ResumeError {
    /// The catalog read for pending purge entries failed.
    Catalog(Error),
    /// A pending purge was found, and purging table `table_id` failed.
    Purge { table_id: u32, error: Error },
}

impl Engine {
    pub(crate) fn purge_tables(&self, ids: &[u32]) -> Result<(), Error> {
        self.purge_tables_noting(ids, &Arc::new(AtomicU32::new(0)))
    }

    /// `purge_tables`, keeping in `current` the id of the table being purged.
    fn purge_tables_noting(&self, ids: &[u32], current: &Arc<AtomicU32>) -> Result<(), Error> {
        let mut rest = ids;
        while let Some(&first) = rest.first() {
            // A commit finishes at most `PURGE_CHUNK` tables: each costs one of its budget.
            let pending = rest[..rest.len().min(PURGE_CHUNK)].to_vec();
            let summary = format!("purge dropped tables from id {first}");
            let noting = current.clone();
            let (finished, _) =
                self.write_any(summary, move |txn| purge_chunk(txn, &pending, &noting))?;
            rest = &rest[finished..];
        }
        Ok(())
    }

    /// Finishes purges a crash interrupted. An error says whether it came from the catalog
    /// read that looks for them or from a purge (and which table's).
    pub(crate) fn resume_purges(&self) -> Result<(), ResumeError> {
        let prefix = pending_prefix();
        let cells = self
            .read(|v| Ok(catalog::all_with_prefix(v, &prefix)?))
            .map_err(ResumeError::Catalog)?;
        let suffixes = cells.iter().filter_map(|c| c.key.get(prefix.len()..));
        // Ids are stored big-endian (so they sort); `get_u32` reads little-endian.
        let ids: Vec<u32> = suffixes
            .filter(|b| b.len() == 4)
            .map(|b| get_u32(b, 0).swap_bytes())
            .collect();
        let current = Arc::new(AtomicU32::new(ids.first().copied().unwrap_or(0)));
        self.purge_tables_noting(&ids, &current)
            .map_err(|error| ResumeError::Purge {
                table_id: current.load(Ordering::Relaxed),
                error,
            })
    }
}
