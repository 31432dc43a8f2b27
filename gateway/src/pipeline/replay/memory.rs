//! The in-process replay store (tests, `store = "memory"`), and the sled store's working set:
//! a map of key → expiry, pruned of expired entries as it grows, refusing new ids (503)
//! rather than forgetting live ones past `max_entries`. A restart forgets every id, so
//! production uses sled (this map, persisted) or Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ReplayStore, StoreDown, StoreKey};

/// Pruning starts at this many entries and waits until the map has doubled again.
const FIRST_PRUNE_AT: usize = 1_024;

/// The bound of `[replay] max_entries` unless configured otherwise: about 100 MB of memory at
/// most (an entry is 40 bytes inline, ~2x that with the map's spare room), and 60 s of 30,000
/// signed requests a second.
pub const DEFAULT_MAX_ENTRIES: u64 = 2_000_000;

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Key → the last Unix second it is remembered.
    expiry: HashMap<StoreKey, i64>,
    prune_at: usize,
    max_entries: usize,
    /// Whether the last insert found the map full: logs once per episode, not per request.
    full: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                expiry: HashMap::new(),
                prune_at: FIRST_PRUNE_AT,
                max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX),
                full: false,
            }),
        }
    }

    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.lock().expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers `key` until `expires_unix` if it is new (see [`ReplayStore::insert_new`]).
    pub fn insert(
        &self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        self.lock().insert_new(key, expires_unix, now_unix)
    }

    /// Remembers an id loaded from disk, past `max_entries` too (the bound may have been
    /// lowered since): the store then refuses new ids until enough expire, and forgets none.
    pub fn load(&self, key: StoreKey, expires_unix: i64) {
        let mut inner = self.lock();
        let e = inner.expiry.entry(key).or_insert(expires_unix);
        *e = (*e).max(expires_unix);
    }

    /// Drops the entries that expired before `now_unix`; returns how many.
    pub fn purge_expired(&self, now_unix: i64) -> usize {
        let mut inner = self.lock();
        let before = inner.expiry.len();
        inner.expiry.retain(|_, e| *e >= now_unix);
        before - inner.expiry.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn insert_new(
        &mut self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        if let Some(e) = self.expiry.get_mut(key) {
            if *e >= now_unix {
                return Ok(false);
            }
            *e = expires_unix;
            return Ok(true);
        }
        if self.expiry.len() >= self.prune_at || self.expiry.len() >= self.max_entries {
            self.expiry.retain(|_, e| *e >= now_unix);
            self.prune_at = (self.expiry.len() * 2).max(FIRST_PRUNE_AT);
        }
        let full = self.expiry.len() >= self.max_entries;
        if full != self.full {
            self.full = full;
            let max_entries = self.max_entries;
            if full {
                tracing::error!(max_entries, "replay store full: refusing signed requests");
            } else {
                tracing::info!(max_entries, "replay store has room again");
            }
        }
        if full {
            return Err(StoreDown);
        }
        self.expiry.insert(*key, expires_unix);
        Ok(true)
    }
}

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn insert_new(
        &self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        self.insert(key, expires_unix, now_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(id: &str) -> StoreKey {
        StoreKey::of("test", id)
    }

    #[tokio::test]
    async fn seen_until_expiry_then_new_again() {
        let store = MemoryStore::default();
        assert_eq!(store.insert_new(&k("k"), 100, 50).await, Ok(true));
        assert_eq!(store.insert_new(&k("k"), 100, 60).await, Ok(false));
        assert_eq!(store.insert_new(&k("k"), 100, 100).await, Ok(false));
        assert_eq!(store.insert_new(&k("k"), 200, 101).await, Ok(true));
        assert_eq!(store.insert_new(&k("k"), 200, 150).await, Ok(false));
    }

    #[tokio::test]
    async fn expired_entries_are_pruned_as_the_map_grows() {
        let store = MemoryStore::default();
        for i in 0..FIRST_PRUNE_AT {
            assert_eq!(
                store.insert_new(&k(&format!("old-{i}")), 10, 0).await,
                Ok(true)
            );
        }
        assert_eq!(store.len(), FIRST_PRUNE_AT);
        assert_eq!(store.insert_new(&k("new"), 100, 50).await, Ok(true));
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn past_max_entries_new_ids_are_refused_not_old_ones_forgotten() {
        let store = MemoryStore::new(2);
        assert_eq!(store.insert_new(&k("a"), 10, 0).await, Ok(true));
        assert_eq!(store.insert_new(&k("b"), 100, 0).await, Ok(true));
        assert_eq!(store.insert_new(&k("c"), 100, 0).await, Err(StoreDown));
        // Seen ids are still answered while full.
        assert_eq!(store.insert_new(&k("b"), 100, 5).await, Ok(false));
        // Once "a" has expired, its room is reused.
        assert_eq!(store.insert_new(&k("c"), 100, 50).await, Ok(true));
        assert_eq!(store.insert_new(&k("d"), 100, 50).await, Err(StoreDown));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn loaded_ids_are_kept_past_max_entries() {
        let store = MemoryStore::new(1);
        store.load(k("a"), 100);
        store.load(k("b"), 100);
        assert_eq!(store.len(), 2);
        assert_eq!(store.insert_new(&k("a"), 100, 50).await, Ok(false));
        assert_eq!(store.insert_new(&k("b"), 100, 50).await, Ok(false));
        assert_eq!(store.insert_new(&k("c"), 100, 50).await, Err(StoreDown));
    }
}
