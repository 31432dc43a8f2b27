//! Read-only degraded mode: switched by the operator (a flag file, re-read by a background
//! task) and entered automatically under overload, where writes are shed before reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Why writes (or everything) are refused now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// Writes refused: the operator switch, or load past `shed_writes_at`.
    Writes,
    /// Everything refused: load at `max_inflight`.
    All,
}

/// The operator switch and the in-flight counter.
#[derive(Debug)]
pub struct Degraded {
    flag_file: Option<PathBuf>,
    operator_read_only: AtomicBool,
    /// The `read_only` switch of the operator's ops file (either switch turns writes off).
    ops_read_only: AtomicBool,
    inflight: AtomicUsize,
    shed_writes_at: usize,
    max_inflight: usize,
}

/// One request in flight; dropping it frees the slot.
#[derive(Debug)]
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Degraded {
    pub fn new(flag_file: Option<PathBuf>, shed_writes_at: usize, max_inflight: usize) -> Self {
        let d = Self {
            flag_file,
            operator_read_only: AtomicBool::new(false),
            ops_read_only: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            shed_writes_at,
            max_inflight,
        };
        d.reload();
        d
    }

    /// Re-reads the operator's flag file (called periodically).
    pub fn reload(&self) {
        let on = self.flag_file.as_deref().is_some_and(flag_is_on);
        let was = self.operator_read_only.swap(on, Ordering::AcqRel);
        if was != on {
            tracing::warn!(read_only = on, "operator read-only switch changed");
        }
    }

    pub fn operator_read_only(&self) -> bool {
        self.operator_read_only.load(Ordering::Acquire)
            || self.ops_read_only.load(Ordering::Acquire)
    }

    /// Sets the ops file's `read_only` switch.
    pub fn set_ops_read_only(&self, on: bool) {
        self.ops_read_only.store(on, Ordering::Release);
    }

    /// Whether writes are refused right now (either cause).
    pub fn read_only(&self) -> bool {
        self.operator_read_only() || self.inflight.load(Ordering::Acquire) >= self.shed_writes_at
    }

    /// Takes an in-flight slot, or says what is shed.
    pub fn enter(&self, is_read: bool) -> Result<InFlight<'_>, Shed> {
        let now = self.inflight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(&self.inflight);
        if now >= self.max_inflight {
            return Err(Shed::All);
        }
        let shed_write = !is_read && (now >= self.shed_writes_at || self.operator_read_only());
        if shed_write {
            Err(Shed::Writes)
        } else {
            Ok(guard)
        }
    }
}

/// The file exists and does not say `0`/`false`/`off`.
fn flag_is_on(path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => !matches!(text.trim(), "0" | "false" | "off"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_writes_first() {
        let d = Degraded::new(None, 1, 2);
        let first = d.enter(false).unwrap();
        assert_eq!(d.enter(false).unwrap_err(), Shed::Writes);
        let second = d.enter(true).unwrap();
        assert_eq!(d.enter(true).unwrap_err(), Shed::All);
        drop((first, second));
        assert!(d.enter(false).is_ok());
    }

    #[test]
    fn operator_flag_file() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("read-only");
        let d = Degraded::new(Some(flag.clone()), 10, 10);
        assert!(d.enter(false).is_ok());
        std::fs::write(&flag, "1").unwrap();
        d.reload();
        assert_eq!(d.enter(false).unwrap_err(), Shed::Writes);
        assert!(d.enter(true).is_ok());
        std::fs::write(&flag, "0").unwrap();
        d.reload();
        assert!(!d.read_only());
    }
}
