//! Dropping tables in two steps, so a drop never has to fit in one WAL record.
//!
//! The drop itself is one small atomic commit: the table's catalog entry is replaced by a
//! "pending purge" entry (`0u32 BE ++ "g\0" ++ table_id BE`). Its documents, now unreachable by
//! name (table ids are never reused), are then deleted in bounded commits, and the pending entry
//! goes last; small tables share a commit. A crash in between leaves the entry, and the next
//! open finishes the purge.

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
/// returns how many of the tables it finished.
fn purge_chunk(txn: &mut Txn<'_>, ids: &[u32]) -> Result<usize, Error> {
    let mut budget = PURGE_CHUNK;
    let mut finished = 0;
    for &id in ids {
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

impl Engine {
    pub(crate) fn purge_tables(&self, ids: &[u32]) -> Result<(), Error> {
        let mut rest = ids;
        while let Some(&first) = rest.first() {
            // A commit finishes at most `PURGE_CHUNK` tables: each costs one of its budget.
            let pending = rest[..rest.len().min(PURGE_CHUNK)].to_vec();
            let summary = format!("purge dropped tables from id {first}");
            let (finished, _) = self.write(summary, move |txn| purge_chunk(txn, &pending))?;
            rest = &rest[finished..];
        }
        Ok(())
    }

    /// Finishes purges a crash interrupted.
    pub(crate) fn resume_purges(&self) -> Result<(), Error> {
        let prefix = pending_prefix();
        let cells = self.read(|v| Ok(catalog::all_with_prefix(v, &prefix)?))?;
        let suffixes = cells.iter().filter_map(|c| c.key.get(prefix.len()..));
        // Ids are stored big-endian (so they sort); `get_u32` reads little-endian.
        let ids: Vec<u32> = suffixes
            .filter(|b| b.len() == 4)
            .map(|b| get_u32(b, 0).swap_bytes())
            .collect();
        self.purge_tables(&ids)
    }
}
