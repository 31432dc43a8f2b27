//! The storage engine: checksummed WAL and pages, a B+tree, group commit, recovery, verify.
