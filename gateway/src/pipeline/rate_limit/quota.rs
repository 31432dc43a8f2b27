//! Daily quotas per principal, persisted in the gateway's sled database so a restart does not
//! reset them: key `<principal> \0 <yyyy-mm-dd UTC>` → requests counted that day (big-endian
//! u64), bumped atomically. Days before yesterday are purged by housekeeping.

use std::path::Path;

use photondb_proto::signing::Timestamp;

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
    tree: sled::Tree,
}

impl std::fmt::Debug for QuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaStore").finish_non_exhaustive()
    }
}

impl QuotaStore {
    /// Over `db.open_tree("quota")` of the gateway's database.
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Opens (or creates) a database of its own at `path` (tests, tools).
    pub fn open(path: &Path) -> sled::Result<Self> {
        Ok(Self::new(sled::open(path)?.open_tree("quota")?))
    }

    /// Writes everything to disk now (shutdown, tests).
    pub fn flush(&self) -> sled::Result<()> {
        self.tree.flush().map(drop)
    }

    /// Counts one request of `principal` on `day`; returns the day's count including it.
    pub(crate) fn bump(&self, principal: &str, day: &Day) -> sled::Result<u64> {
        let key = key(principal, &day.date);
        let new = self
            .tree
            .update_and_fetch(key, |old| Some(increment(old)))?;
        Ok(new.as_deref().map_or(u64::MAX, decode))
    }

    /// Removes the counters of days before `keep_from` (`yyyy-mm-dd`); returns how many.
    pub fn purge_before(&self, keep_from: &str) -> usize {
        let mut removed = 0;
        for entry in self.tree.iter() {
            let Ok((key, _)) = entry else {
                tracing::warn!("quota store scan failed; purge stopped");
                break;
            };
            let old = date_of(&key).is_none_or(|date| date < keep_from.as_bytes());
            if old && self.tree.remove(&key).is_ok() {
                removed += 1;
            }
        }
        removed
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

fn increment(old: Option<&[u8]>) -> Vec<u8> {
    let count = old.map_or(0, decode);
    count.saturating_add(1).to_be_bytes().to_vec()
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
