//! The default replay store: request ids are checked and remembered in memory (a
//! [`MemoryStore`], the authority while the process runs), and written behind, in batches,
//! to a sled tree, from which a restarted gateway loads every id still inside its window —
//! so a restart does not reopen a replay.
//!
//! Each batch is one sled entry: key = the batch's latest expiry (big-endian i64) ++ a
//! sequence number, value = its records (the 32-byte [`StoreKey`], then the expiry as
//! big-endian i64).
//! Keys sort by expiry, so purging is a scan from the start that stops at the first live
//! batch, and disk holds at most one window of ids. Batches are written behind the request
//! path (`write_behind.rs`) and on [`SledStore::persist`] (shutdown); one sled write per batch
//! rather than per request keeps the store off the request's CPU budget.
//!
//! Durability: an id accepted in the last ~600 ms before a crash may be lost, and that one
//! request replayable within its window after the restart. Flushing on every insert (an
//! fsync per request) would cost more than the signature check it protects.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::memory::MemoryStore;
use super::{ReplayStore, StoreDown, StoreKey};
use crate::pipeline::write_behind;

pub struct SledStore {
    shared: Arc<Shared>,
}

struct Shared {
    tree: sled::Tree,
    memory: MemoryStore,
    /// Ids accepted since the last batch, encoded as records.
    pending: Mutex<Pending>,
    next_seq: AtomicU64,
}

#[derive(Default)]
struct Pending {
    records: Vec<u8>,
    latest_expiry: i64,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("entries", &self.shared.memory.len())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Over a tree of the gateway's sled database (`db.open_tree("replay")`): loads the ids
    /// still remembered at `now_unix`, and starts the thread that writes new ones behind.
    pub fn new(tree: sled::Tree, max_entries: u64, now_unix: i64) -> sled::Result<Self> {
        let memory = MemoryStore::new(max_entries);
        let mut next_seq = 0;
        for batch in tree.iter() {
            let (key, value) = batch?;
            let Some((_, seq)) = decode_batch_key(&key) else {
                continue;
            };
            next_seq = next_seq.max(seq + 1);
            for (key, expiry) in records(&value).filter(|&(_, expiry)| expiry >= now_unix) {
                memory.load(key, expiry);
            }
        }
        let shared = Arc::new(Shared {
            tree,
            memory,
            pending: Mutex::default(),
            next_seq: AtomicU64::new(next_seq),
        });
        write_behind::spawn("replay-store", Arc::downgrade(&shared), Shared::write_batch)?;
        Ok(Self { shared })
    }

    /// Opens (or creates) a database of its own at `path` (tests, tools).
    pub fn open(path: &Path, max_entries: u64, now_unix: i64) -> sled::Result<Self> {
        let tree = sled::open(path)?.open_tree("replay")?;
        Self::new(tree, max_entries, now_unix)
    }

    /// Entries held in memory, expired or not.
    pub fn len(&self) -> usize {
        self.shared.memory.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the pending ids as a batch and flushes the tree (shutdown, tests).
    pub fn persist(&self) -> sled::Result<()> {
        self.shared.write_batch()?;
        self.shared.tree.flush().map(drop)
    }

    /// Drops what expired before `now_unix`, in memory and on disk; returns how many ids were
    /// dropped from memory. Run it from a periodic task, off the async workers.
    pub fn purge_expired(&self, now_unix: i64) -> usize {
        for batch in self.shared.tree.iter() {
            let Ok((key, _)) = batch else {
                tracing::warn!("replay store scan failed; purge stopped");
                break;
            };
            match decode_batch_key(&key) {
                Some((latest, _)) if latest >= now_unix => break,
                _ => {
                    if let Err(e) = self.shared.tree.remove(&key) {
                        tracing::warn!(error = %e, "replay store purge failed");
                        break;
                    }
                }
            }
        }
        self.shared.memory.purge_expired(now_unix)
    }
}

impl Shared {
    fn remember(&self, key: &StoreKey, expires_unix: i64) {
        let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        p.records.extend_from_slice(key.as_bytes());
        p.records.extend_from_slice(&expires_unix.to_be_bytes());
        p.latest_expiry = p.latest_expiry.max(expires_unix);
    }

    fn write_batch(&self) -> sled::Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.records.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&batch.latest_expiry.to_be_bytes());
        key[8..].copy_from_slice(&seq.to_be_bytes());
        self.tree.insert(key, batch.records).map(drop)
    }
}

fn decode_batch_key(key: &[u8]) -> Option<(i64, u64)> {
    let key: &[u8; 16] = key.try_into().ok()?;
    let (latest, seq) = key.split_at(8);
    Some((
        i64::from_be_bytes(latest.try_into().ok()?),
        u64::from_be_bytes(seq.try_into().ok()?),
    ))
}

/// One record of a batch value: the key, then its expiry.
const RECORD_BYTES: usize = 32 + 8;

/// The records of one batch value (a trailing partial record is ignored).
fn records(value: &[u8]) -> impl Iterator<Item = (StoreKey, i64)> + '_ {
    value.chunks_exact(RECORD_BYTES).map(|r| {
        let (key, expiry) = r.split_at(32);
        let key: [u8; 32] = key.try_into().unwrap_or([0; 32]);
        let expiry: [u8; 8] = expiry.try_into().unwrap_or([0; 8]);
        (StoreKey::from_bytes(key), i64::from_be_bytes(expiry))
    })
}

#[async_trait]
impl ReplayStore for SledStore {
    async fn insert_new(
        &self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        let new = self.shared.memory.insert(key, expires_unix, now_unix)?;
        if new {
            self.shared.remember(key, expires_unix);
        }
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DEFAULT_MAX_ENTRIES;
    use super::*;

    fn k(id: &str) -> StoreKey {
        StoreKey::of("test", id)
    }

    fn open(dir: &Path, now: i64) -> SledStore {
        SledStore::open(dir, DEFAULT_MAX_ENTRIES, now).expect("open")
    }

    #[tokio::test]
    async fn a_reopened_store_still_knows_the_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 100);
        assert_eq!(store.insert_new(&k("k"), 200, 100).await, Ok(true));
        store.persist().expect("persist");
        drop(store);
        let store = open(dir.path(), 150);
        assert_eq!(store.len(), 1);
        assert_eq!(store.insert_new(&k("k"), 200, 150).await, Ok(false));
        assert_eq!(store.insert_new(&k("k2"), 200, 150).await, Ok(true));
    }

    #[tokio::test]
    async fn ids_reach_disk_by_themselves_within_the_persist_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::open(dir.path()).expect("sled");
        let store = SledStore::new(db.open_tree("replay").expect("tree"), 10, 100).expect("new");
        assert_eq!(store.insert_new(&k("k"), 200, 100).await, Ok(true));
        tokio::time::sleep(write_behind::EVERY * 3).await;
        let written: Vec<_> = db
            .open_tree("replay")
            .expect("tree")
            .iter()
            .map(|b| b.expect("batch").1.to_vec())
            .collect();
        let ids: Vec<_> = written
            .iter()
            .flat_map(|v| records(v).collect::<Vec<_>>())
            .collect();
        assert_eq!(ids, vec![(k("k"), 200)]);
    }

    #[tokio::test]
    async fn expired_ids_are_not_loaded_and_their_batches_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 0);
        assert_eq!(store.insert_new(&k("old"), 10, 0).await, Ok(true));
        store.persist().expect("persist");
        assert_eq!(store.insert_new(&k("live"), 100, 0).await, Ok(true));
        store.persist().expect("persist");
        assert_eq!(store.purge_expired(50), 1);
        assert_eq!(store.shared.tree.len(), 1);
        drop(store);
        let store = open(dir.path(), 50);
        assert_eq!(store.len(), 1);
        assert_eq!(store.insert_new(&k("old"), 110, 50).await, Ok(true));
        assert_eq!(store.insert_new(&k("live"), 110, 50).await, Ok(false));
    }

    #[tokio::test]
    async fn an_expired_entry_is_replaced_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(dir.path(), 5);
        assert_eq!(store.insert_new(&k("k"), 10, 5).await, Ok(true));
        assert_eq!(store.insert_new(&k("k"), 10, 10).await, Ok(false));
        assert_eq!(store.insert_new(&k("k"), 80, 11).await, Ok(true));
        assert_eq!(store.insert_new(&k("k"), 80, 12).await, Ok(false));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn past_max_entries_new_ids_are_refused_not_old_ones_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), 2, 0).expect("open");
        assert_eq!(store.insert_new(&k("a"), 10, 0).await, Ok(true));
        assert_eq!(store.insert_new(&k("b"), 100, 0).await, Ok(true));
        assert_eq!(store.insert_new(&k("c"), 100, 0).await, Err(StoreDown));
        assert_eq!(store.purge_expired(50), 1);
        assert_eq!(store.insert_new(&k("c"), 100, 50).await, Ok(true));
        assert_eq!(store.insert_new(&k("b"), 100, 50).await, Ok(false));
        assert_eq!(store.insert_new(&k("d"), 100, 50).await, Err(StoreDown));
    }
}
