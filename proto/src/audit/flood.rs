//! Floods of identical refusals on the audit log, bounded (DESIGN §8): in each interval the
//! first refusal from a peer for a reason is written at once, later ones are only counted, and
//! when the interval ends one summary line per (peer, reason) carries their `count`.
//!
//! Whatever arrives, one interval writes at most [`FIRST_LINES`] first lines and
//! [`SUMMARY_LINES`] + 1 summaries (the largest counts by name, the rest summed under peer and
//! reason `other`), and keeps at most [`MAX_KEYS`] (peer, reason) pairs in memory (past them,
//! refusals are counted under `other`). One pair gets at most two lines per interval. Every
//! refusal is accounted for: a line without `count` stands for one, a summary for `count`.
//! The daemons say what a peer is (a network, so one attacker's many addresses are one peer).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First lines per interval, all peers and reasons together; past it refusals are counted.
pub const FIRST_LINES: usize = 16;
/// Summary lines per interval that name their peer and reason; the rest are summed in one.
pub const SUMMARY_LINES: usize = 16;
/// (peer, reason) pairs counted per interval; refusals past them are counted as `other`.
pub const MAX_KEYS: usize = 4096;
/// The summary's `peer` and `reason` for refusals not summed under a pair of their own.
pub const OTHER: &str = "other";

/// One interval's refusals.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    first_lines: usize,
    /// Refusals counted but not written, per pair; 0 for a pair with only its first line.
    counted: HashMap<(String, String), u64>,
    /// Refusals past `MAX_KEYS` pairs.
    overflow: u64,
}

/// What one refusal costs the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noted {
    /// Write its line now.
    FirstLine,
    /// Counted for the interval's summary.
    Counted,
}

/// One line at the end of an interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub peer: String,
    pub reason: String,
    pub count: u64,
}

impl Window {
    pub fn starting(at: Instant) -> Self {
        Self {
            started: at,
            first_lines: 0,
            counted: HashMap::new(),
            overflow: 0,
        }
    }

    /// Notes one refusal of `peer` for `reason`.
    pub fn note(&mut self, peer: String, reason: &str) -> Noted {
        let key = (peer, reason.to_owned());
        if let Some(count) = self.counted.get_mut(&key) {
            *count += 1;
            return Noted::Counted;
        }
        if self.counted.len() >= MAX_KEYS {
            self.overflow += 1;
            return Noted::Counted;
        }
        if self.first_lines >= FIRST_LINES {
            self.counted.insert(key, 1);
            return Noted::Counted;
        }
        self.first_lines += 1;
        self.counted.insert(key, 0);
        Noted::FirstLine
    }

    /// The pairs held in memory.
    pub fn pairs(&self) -> usize {
        self.counted.len()
    }

    /// When `interval` has passed since the window started: a new window from `now`, and the
    /// ended one's summaries to write.
    pub fn roll(&mut self, now: Instant, interval: Duration) -> Option<Vec<Summary>> {
        if now.saturating_duration_since(self.started) < interval {
            return None;
        }
        Some(std::mem::replace(self, Self::starting(now)).summaries())
    }

    /// The interval's summaries: the largest counts by name, the rest summed as `other`.
    fn summaries(self) -> Vec<Summary> {
        let mut counted: Vec<_> = self.counted.into_iter().filter(|(_, n)| *n > 0).collect();
        // Largest first, then by pair, so which pairs are named does not depend on hashing.
        counted.sort_by(|(a, n), (b, m)| m.cmp(n).then_with(|| a.cmp(b)));
        let named = counted.len().min(SUMMARY_LINES);
        let rest = counted.drain(named..).map(|(_, n)| n).sum::<u64>() + self.overflow;
        let mut lines: Vec<Summary> = counted
            .into_iter()
            .map(|((peer, reason), count)| Summary {
                peer,
                reason,
                count,
            })
            .collect();
        if rest > 0 {
            lines.push(Summary {
                peer: OTHER.into(),
                reason: OTHER.into(),
                count: rest,
            });
        }
        lines
    }
}
