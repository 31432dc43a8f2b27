//! The write-ahead log: segment files, records, appending with group commit, and scanning.

pub(crate) mod files;
pub(crate) mod record;
pub(crate) mod scan;
pub(crate) mod segment;
mod writer;

pub(crate) use writer::{Wal, WalStart};
