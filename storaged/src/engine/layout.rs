//! Where each file of a store lives inside its directory.

use std::path::{Path, PathBuf};

pub(crate) fn control(dir: &Path) -> PathBuf {
    dir.join("control")
}

pub(crate) fn control_tmp(dir: &Path) -> PathBuf {
    dir.join("control.tmp")
}

/// Held with an exclusive `flock` while a process has the store open.
pub(crate) fn lock(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

pub(crate) fn data(dir: &Path) -> PathBuf {
    dir.join("pages.db")
}

pub(crate) fn wal(dir: &Path) -> PathBuf {
    dir.join("wal")
}

pub(crate) fn quarantine(dir: &Path) -> PathBuf {
    dir.join("quarantine")
}

/// Names the store's claim on its WAL archive (`archive.rs`); never copied into a backup.
pub(crate) const ARCHIVE_CLAIM: &str = "archive-claim";

pub(crate) fn archive_claim(dir: &Path) -> PathBuf {
    dir.join(ARCHIVE_CLAIM)
}
