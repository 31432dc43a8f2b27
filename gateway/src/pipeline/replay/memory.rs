//! The in-process replay store (tests, `store = "memory"`): a map of key → expiry, pruned of
//! expired entries as it grows. A restart forgets every id, so production uses sled or Redis.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ReplayStore, StoreDown};

/// Pruning starts at this many entries and waits until the map has doubled again.
const FIRST_PRUNE_AT: usize = 1_024;

#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Key → the last Unix second it is remembered.
    expiry: HashMap<String, i64>,
    prune_at: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                expiry: HashMap::new(),
                prune_at: FIRST_PRUNE_AT,
            }),
        }
    }
}

impl MemoryStore {
    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.lock().expiry.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn insert_new(&mut self, key: &str, expires_unix: i64, now_unix: i64) -> bool {
        if self.expiry.get(key).is_some_and(|&e| e >= now_unix) {
            return false;
        }
        self.expiry.insert(key.to_owned(), expires_unix);
        if self.expiry.len() >= self.prune_at {
            self.expiry.retain(|_, e| *e >= now_unix);
            self.prune_at = (self.expiry.len() * 2).max(FIRST_PRUNE_AT);
        }
        true
    }
}

#[async_trait]
impl ReplayStore for MemoryStore {
    async fn insert_new(
        &self,
        key: &str,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        Ok(self.lock().insert_new(key, expires_unix, now_unix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seen_until_expiry_then_new_again() {
        let store = MemoryStore::default();
        assert_eq!(store.insert_new("k", 100, 50).await, Ok(true));
        assert_eq!(store.insert_new("k", 100, 60).await, Ok(false));
        assert_eq!(store.insert_new("k", 100, 100).await, Ok(false));
        assert_eq!(store.insert_new("k", 200, 101).await, Ok(true));
        assert_eq!(store.insert_new("k", 200, 150).await, Ok(false));
    }

    #[tokio::test]
    async fn expired_entries_are_pruned_as_the_map_grows() {
        let store = MemoryStore::default();
        for i in 0..FIRST_PRUNE_AT - 1 {
            assert_eq!(store.insert_new(&format!("old-{i}"), 10, 0).await, Ok(true));
        }
        assert_eq!(store.len(), FIRST_PRUNE_AT - 1);
        assert_eq!(store.insert_new("new", 100, 50).await, Ok(true));
        assert_eq!(store.len(), 1);
    }
}
