//! Daily quotas per principal, persisted in the gateway's sled database so a restart does not
//! reset them: key `<principal> \0 <yyyy-mm-dd UTC>` → requests counted that day (big-endian
//! u64). The counters live in memory (read from sled the first time a principal is seen on a
//! day) and are written behind the request path (`write_behind.rs`): a crash may forget the
//! last ~600 ms of counts, a clean stop none. Days before yesterday are purged by
//! housekeeping.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use photondb_proto::signing::Timestamp;

use crate::pipeline::write_behind;

/// One UTC day, as a quota sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Day {
    /// `yyyy-mm-dd`.
    pub(crate) date: String,
    /// Seconds until the next UTC midnight (1..=86400): when the quota starts over.
    pub(crate) secs_left: u64,
}

const DAY_SECS: i64 = 86_400;

impl Day {
    pub(crate) fn of(now_unix: i64) -> Self {
        let mut date = Timestamp::from_unix(now_unix).format();
        date.truncate(10);
        let secs_left = (DAY_SECS - now_unix.rem_euclid(DAY_SECS)).unsigned_abs();
        Self { date, secs_left }
    }
}

/// The counters, over a tree of the gateway's sled database.
#[derive(Clone)]
pub struct QuotaStore {
    shared: Arc<Shared>,
}

struct Shared {
    tree: sled::Tree,
    counters: Mutex<HashMap<Vec<u8>, Counter>>,
}

#[derive(Debug, Clone, Copy)]
struct Counter {
    count: u64,
    /// Changed since it was last written.
    dirty: bool,
}

impl std::fmt::Debug for QuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaStore").finish_non_exhaustive()
    }
}

impl QuotaStore {
    /// Over `db.open_tree("quota")` of the gateway's database; starts the thread that writes
    /// counts behind.
    pub fn new(tree: sled::Tree) -> sled::Result<Self> {
        let shared = Arc::new(Shared {
            tree,
            counters: Mutex::default(),
        });
        write_behind::spawn(
            "quota-store",
            Arc::downgrade(&shared),
            Shared::write_changed,
        )?;
        Ok(Self { shared })
    }

    /// Opens (or creates) a database of its own at `path` (tests, tools).
    pub fn open(path: &Path) -> sled::Result<Self> {
        Self::new(sled::open(path)?.open_tree("quota")?)
    }

    /// Writes every changed count and flushes the tree (shutdown, tests).
    pub fn flush(&self) -> sled::Result<()> {
        self.shared.write_changed()?;
        self.shared.tree.flush().map(drop)
    }

    /// Counts one request of `principal` on `day`; returns the day's count including it.
    pub(crate) fn bump(&self, principal: &str, day: &Day) -> sled::Result<u64> {
        let key = key(principal, &day.date);
        let mut counters = self.shared.lock();
        let counter = match counters.get_mut(&key) {
            Some(counter) => counter,
            None => {
                // First request of this principal today in this process: the count so far
                // is on disk (or zero).
                let stored = self.shared.tree.get(&key)?;
                let count = stored.as_deref().map_or(0, decode);
                counters.entry(key).or_insert(Counter {
                    count,
                    dirty: false,
                })
            }
        };
        counter.count = counter.count.saturating_add(1);
        counter.dirty = true;
        Ok(counter.count)
    }

    /// Removes the counters of days before `keep_from` (`yyyy-mm-dd`), in memory and on
    /// disk; returns how many.
    pub fn purge_before(&self, keep_from: &str) -> usize {
        let old = |key: &[u8]| date_of(key).is_none_or(|date| date < keep_from.as_bytes());
        let mut gone = std::collections::HashSet::new();
        self.shared.lock().retain(|key, _| {
            let keep = !old(key);
            if !keep {
                gone.insert(key.clone());
            }
            keep
        });
        for entry in self.shared.tree.iter() {
            let Ok((key, _)) = entry else {
                tracing::warn!("quota store scan failed; purge stopped");
                break;
            };
            if old(&key) && self.shared.tree.remove(&key).is_ok() {
                gone.insert(key.to_vec());
            }
        }
        gone.len()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Counter>> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One sled batch of the counts changed since the last write; if it fails they stay
    /// changed, for the next write.
    fn write_changed(&self) -> sled::Result<()> {
        let changed: Vec<(Vec<u8>, u64)> = self
            .lock()
            .iter_mut()
            .filter(|(_, c)| c.dirty)
            .map(|(key, c)| {
                c.dirty = false;
                (key.clone(), c.count)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (key, count) in &changed {
            batch.insert(key.as_slice(), &count.to_be_bytes());
        }
        let written = self.tree.apply_batch(batch);
        if written.is_err() {
            let mut counters = self.lock();
            for (key, _) in &changed {
                if let Some(c) = counters.get_mut(key) {
                    c.dirty = true;
                }
            }
        }
        written
    }
}

fn key(principal: &str, date: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(principal.len() + 1 + date.len());
    key.extend_from_slice(principal.as_bytes());
    key.push(0);
    key.extend_from_slice(date.as_bytes());
    key
}

/// The date part of a key: after its last NUL (a principal may contain one, a date cannot).
fn date_of(key: &[u8]) -> Option<&[u8]> {
    let at = key.iter().rposition(|&b| b == 0)?;
    Some(&key[at + 1..])
}

/// An unreadable counter reads as exhausted: a damaged store never grants more.
fn decode(value: &[u8]) -> u64 {
    value.try_into().map_or(u64::MAX, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIDNIGHT: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    #[test]
    fn days_are_utc_dates_and_end_at_midnight() {
        let day = |date: &str, secs_left| Day {
            date: date.into(),
            secs_left,
        };
        assert_eq!(Day::of(MIDNIGHT), day("2026-01-01", 86_400));
        assert_eq!(Day::of(MIDNIGHT - 1), day("2025-12-31", 1));
        assert_eq!(Day::of(MIDNIGHT + 3_600), day("2026-01-01", 82_800));
    }

    #[test]
    fn counts_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = Day::of(MIDNIGHT);
        let store = QuotaStore::open(dir.path()).expect("open");
        assert_eq!(store.bump("partner:acme", &day).expect("bump"), 1);
        assert_eq!(store.bump("partner:acme", &day).expect("bump"), 2);
        store.flush().expect("flush");
        drop(store);
        let store = QuotaStore::open(dir.path()).expect("reopen");
        assert_eq!(store.bump("partner:acme", &day).expect("bump"), 3);
        assert_eq!(store.bump("partner:other", &day).expect("bump"), 1);
    }

    #[test]
    fn each_day_counts_from_one_and_old_days_are_purged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = QuotaStore::open(dir.path()).expect("open");
        let (monday, tuesday) = (Day::of(MIDNIGHT), Day::of(MIDNIGHT + 86_400));
        assert_eq!(store.bump("p", &monday).expect("bump"), 1);
        assert_eq!(store.bump("p", &monday).expect("bump"), 2);
        assert_eq!(store.bump("p", &tuesday).expect("bump"), 1);
        assert_eq!(store.purge_before(&tuesday.date), 1);
        assert_eq!(store.bump("p", &tuesday).expect("bump"), 2);
        assert_eq!(store.bump("p", &monday).expect("bump"), 1);
    }
}
