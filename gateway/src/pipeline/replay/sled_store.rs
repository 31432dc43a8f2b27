//! The default replay store: a sled tree of key → expiry (Unix seconds, big-endian i64), so a
//! restarted gateway still refuses a replay. New keys go in by compare-and-swap from absent;
//! an expired entry is replaced by compare-and-swap on its old value, so two racing requests
//! cannot both win. [`SledStore::purge_expired`] (called periodically) keeps the tree small,
//! and past `max_entries` new ids are refused (503) rather than old ones forgotten.
//!
//! Durability: sled writes to disk in the background (every 500 ms by default); an id accepted
//! just before a crash may be lost, and that one request replayable within its window after
//! the restart. Flushing on every insert (an fsync per request) would cost more than the
//! signature check it protects.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;

use super::{ReplayStore, StoreDown};

/// The bound of `[replay] max_entries` unless configured otherwise.
pub const DEFAULT_MAX_ENTRIES: u64 = 10_000_000;

/// How many times an expired entry's replacement is retried against concurrent writers.
const CAS_ATTEMPTS: usize = 4;

pub struct SledStore {
    tree: sled::Tree,
    max_entries: u64,
    /// Entries in the tree, kept here because `Tree::len` scans the whole tree.
    entries: AtomicU64,
    /// Whether the last insert found the store full: logs once per episode, not per request.
    full: AtomicBool,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.entries.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How one compare-and-swap went.
enum Attempt {
    Inserted,
    Seen,
    /// Someone changed the entry between our read and our swap.
    Raced,
}

impl SledStore {
    /// Over a tree of the gateway's sled database (`db.open_tree("replay")`); counts its
    /// entries once, at startup.
    pub fn new(tree: sled::Tree, max_entries: u64) -> Self {
        let entries = AtomicU64::new(tree.len() as u64);
        Self {
            tree,
            max_entries,
            entries,
            full: AtomicBool::new(false),
        }
    }

    /// Opens (or creates) a database of its own at `path` (tests, tools).
    pub fn open(path: &Path, max_entries: u64) -> sled::Result<Self> {
        let tree = sled::open(path)?.open_tree("replay")?;
        Ok(Self::new(tree, max_entries))
    }

    /// Entries held, expired or not.
    pub fn len(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything to disk now (shutdown, tests).
    pub fn flush(&self) -> sled::Result<()> {
        self.tree.flush().map(drop)
    }

    /// Removes the entries that expired before `now_unix`; returns how many. A full scan:
    /// run it from a periodic task (off the async workers, e.g. `spawn_blocking`).
    pub fn purge_expired(&self, now_unix: i64) -> usize {
        let mut removed = 0;
        for entry in self.tree.iter() {
            let Ok((key, value)) = entry else {
                tracing::warn!("replay store scan failed; purge stopped");
                break;
            };
            if decode(&value).is_some_and(|e| e >= now_unix) {
                continue;
            }
            if let Ok(Ok(())) = self
                .tree
                .compare_and_swap(&key, Some(&value), None::<&[u8]>)
            {
                self.entries.fetch_sub(1, Ordering::Relaxed);
                removed += 1;
            }
        }
        removed
    }

    fn insert(&self, key: &str, expires_unix: i64, now_unix: i64) -> Result<bool, StoreDown> {
        if !self.has_room() {
            return Err(StoreDown);
        }
        for _ in 0..CAS_ATTEMPTS {
            match self.attempt(key.as_bytes(), expires_unix, now_unix)? {
                Attempt::Inserted => return Ok(true),
                Attempt::Seen => return Ok(false),
                Attempt::Raced => {}
            }
        }
        // Still contended: another request is writing this very id right now.
        Ok(false)
    }

    /// Below `max_entries`; a change either way is logged once.
    fn has_room(&self) -> bool {
        let full = self.len() >= self.max_entries;
        if self.full.swap(full, Ordering::Relaxed) != full {
            let max_entries = self.max_entries;
            if full {
                tracing::error!(max_entries, "replay store full: refusing signed requests");
            } else {
                tracing::info!(max_entries, "replay store has room again");
            }
        }
        !full
    }

    fn attempt(&self, key: &[u8], expires_unix: i64, now_unix: i64) -> Result<Attempt, StoreDown> {
        let new = expires_unix.to_be_bytes().to_vec();
        let swapped = self
            .tree
            .compare_and_swap(key, None::<&[u8]>, Some(new.clone()));
        let current = match swapped.map_err(down)? {
            Ok(()) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                return Ok(Attempt::Inserted);
            }
            Err(e) => e.current,
        };
        let Some(current) = current else {
            return Ok(Attempt::Raced);
        };
        // Unreadable values count as seen: never forget an id we cannot read.
        if decode(&current).is_none_or(|e| e >= now_unix) {
            return Ok(Attempt::Seen);
        }
        let replaced = self.tree.compare_and_swap(key, Some(&current), Some(new));
        match replaced.map_err(down)? {
            Ok(()) => Ok(Attempt::Inserted),
            Err(_) => Ok(Attempt::Raced),
        }
    }
}

fn decode(value: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(value.try_into().ok()?))
}

fn down(e: sled::Error) -> StoreDown {
    tracing::error!(error = %e, "replay store write failed");
    StoreDown
}

#[async_trait]
impl ReplayStore for SledStore {
    async fn insert_new(
        &self,
        key: &str,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        self.insert(key, expires_unix, now_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reopened_store_still_knows_the_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), DEFAULT_MAX_ENTRIES).expect("open");
        assert_eq!(store.insert_new("k", 200, 100).await, Ok(true));
        store.flush().expect("flush");
        drop(store);
        let store = SledStore::open(dir.path(), DEFAULT_MAX_ENTRIES).expect("reopen");
        assert_eq!(store.len(), 1);
        assert_eq!(store.insert_new("k", 200, 150).await, Ok(false));
    }

    #[tokio::test]
    async fn an_expired_entry_is_replaced_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), DEFAULT_MAX_ENTRIES).expect("open");
        assert_eq!(store.insert_new("k", 10, 5).await, Ok(true));
        assert_eq!(store.insert_new("k", 10, 10).await, Ok(false));
        assert_eq!(store.insert_new("k", 80, 11).await, Ok(true));
        assert_eq!(store.insert_new("k", 80, 12).await, Ok(false));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn past_max_entries_new_ids_are_refused_not_old_ones_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), 2).expect("open");
        assert_eq!(store.insert_new("a", 10, 0).await, Ok(true));
        assert_eq!(store.insert_new("b", 100, 0).await, Ok(true));
        assert_eq!(store.insert_new("c", 100, 0).await, Err(StoreDown));
        assert_eq!(store.insert_new("a", 10, 5).await, Err(StoreDown));
        assert_eq!(store.purge_expired(50), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(store.insert_new("c", 100, 50).await, Ok(true));
        assert_eq!(store.insert_new("b", 100, 50).await, Err(StoreDown));
    }

    #[tokio::test]
    async fn purge_keeps_what_is_still_remembered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), DEFAULT_MAX_ENTRIES).expect("open");
        for (key, expiry) in [("a", 9), ("b", 10), ("c", 11)] {
            assert_eq!(store.insert_new(key, expiry, 0).await, Ok(true));
        }
        assert_eq!(store.purge_expired(10), 1);
        assert_eq!(store.insert_new("b", 10, 10).await, Ok(false));
        assert_eq!(store.insert_new("a", 20, 10).await, Ok(true));
    }
}
