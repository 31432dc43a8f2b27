//! Every limit of the wire contract, once. storaged enforces them on every request; the
//! gateway's configuration may only lower them, so it refuses earlier, never later. storaged
//! ties each one at compile time to the engine's physical limit it must not exceed.

use crate::names::{MAX_KEY_BYTES, MAX_NAME_BYTES};

/// Operations in one atomic batch. Each may touch its own leaf, and the whole batch is one WAL
/// record, so the count bounds the pages one transaction copies under the tree lock.
pub const MAX_BATCH_OPERATIONS: usize = 1_000;

/// The largest document (its JSON bytes).
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Documents in a scan page when the request asks for none (`limit` 0 or absent).
pub const DEFAULT_SCAN_LIMIT: usize = 100;

/// The most documents one scan page returns, whatever the request asks for.
pub const MAX_SCAN_LIMIT: usize = 1_000;

/// The most names one `ListDatabases` or `ListTables` page returns, and the page size when the
/// request asks for none (`limit` 0): a client written before the lists were paged sends no
/// limit and gets the largest first page. Clients must follow `next_start_after`.
pub const MAX_LIST_LIMIT: usize = 1_000;

/// A scan page stops once its documents' bytes reach this (so one page cannot pull
/// gigabytes); the document that crosses it is still included.
pub const MAX_SCAN_PAGE_BYTES: usize = 4 << 20;

/// Bound on the per-document framing of a scan page (key, version, field tags and lengths).
const SCAN_ENTRY_OVERHEAD: usize = MAX_KEY_BYTES + 32;

/// The largest scan page on the wire: the bytes before the last document, the last document,
/// and the framing of every entry, with room for the page's own fields.
pub const MAX_SCAN_PAGE_MESSAGE: usize = MAX_SCAN_PAGE_BYTES
    + MAX_DOCUMENT_BYTES
    + MAX_SCAN_LIMIT * SCAN_ENTRY_OVERHEAD
    + MAX_KEY_BYTES
    + 64;

/// The keys and documents of one batch together, in bytes (one batch is one WAL record).
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// The largest gRPC message either side sends or accepts, used by the gateway's tonic client
/// and by storaged's server alike, so a legal scan page or batch always decodes.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

const _: () = assert!(MAX_SCAN_PAGE_MESSAGE <= MAX_MESSAGE_BYTES);
const _: () =
    assert!(MAX_BATCH_BYTES + MAX_BATCH_OPERATIONS * SCAN_ENTRY_OVERHEAD <= MAX_MESSAGE_BYTES);
const _: () = assert!(DEFAULT_SCAN_LIMIT <= MAX_SCAN_LIMIT);
// A full list page: every name with its tag and length, and the next_start_after field.
const _: () = assert!((MAX_LIST_LIMIT + 1) * (MAX_NAME_BYTES + 2) <= MAX_MESSAGE_BYTES);
