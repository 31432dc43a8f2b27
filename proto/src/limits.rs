//! Limits storaged enforces on every request, so the gateway can refuse earlier, never later.

/// Operations in one atomic batch. Each may touch its own leaf, and the whole batch is one WAL
/// record, so the count bounds the pages one transaction copies under the tree lock.
pub const MAX_BATCH_OPERATIONS: usize = 1_000;
