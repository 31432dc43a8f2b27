//! Error types: one `StorageError` for anything the disk did, wrapped by each operation's error.
//! A leaf: every layer imports it, and it imports only std and the refusal report.

use std::fmt;
use std::io;

use crate::engine::refusal::Refusal;

/// What the disk did wrong. Every storage failure in the engine is one of these three.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Bytes on disk failed a checksum or a structural check.
    #[error("corrupted data{}: {detail}", page_suffix(*.page))]
    Corrupted { page: Option<u64>, detail: String },
    /// The operating system reported an I/O error; the engine is now latched.
    #[error("i/o error: {0}")]
    Io(#[source] std::io::Error),
    /// An earlier write or fsync failed; nothing is retried until the engine is reopened.
    #[error("an earlier i/o error stopped the engine; reopen to recover from the WAL")]
    PreviousIo,
}

fn page_suffix(page: Option<u64>) -> String {
    page.map(|p| format!(" in page {p}")).unwrap_or_default()
}

impl StorageError {
    pub(crate) fn corrupted(page: Option<u64>, detail: impl Into<String>) -> Self {
        StorageError::Corrupted {
            page,
            detail: detail.into(),
        }
    }
}

/// Marks the error a latched I/O backend returns, so it maps to `StorageError::PreviousIo`.
#[derive(Debug)]
struct PreviousIoMarker;

impl fmt::Display for PreviousIoMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an earlier i/o error latched the backend")
    }
}

impl std::error::Error for PreviousIoMarker {}

/// The error every call on a latched backend returns.
pub(crate) fn previous_io_error() -> io::Error {
    io::Error::other(PreviousIoMarker)
}

pub(crate) fn is_previous_io(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<PreviousIoMarker>())
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        if is_previous_io(&e) {
            StorageError::PreviousIo
        } else {
            StorageError::Io(e)
        }
    }
}

/// The kind of object an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Database,
    Table,
    Document,
}

impl fmt::Display for What {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            What::Database => "database",
            What::Table => "table",
            What::Document => "document",
        })
    }
}

/// The error of every engine operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} not found")]
    NotFound(What),
    #[error("{0} already exists")]
    AlreadyExists(What),
    #[error("version mismatch: expected {expected:?}, found {actual:?}")]
    VersionMismatch {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bug, not damage: an invariant of the engine's own code failed (a panicking
    /// transaction, a split that cannot fit). Nothing was changed; the store is not suspect.
    #[error("internal error: {0}")]
    Internal(String),
    /// More sealed WAL waits for the archive than `[archive] max_unarchived_mib` allows:
    /// writes wait for the archive rather than break its continuity.
    #[error(
        "writes are refused: {waiting_bytes} bytes of sealed WAL wait for the archive, more          than the bound of {bound_bytes}"
    )]
    ArchiveBehind {
        waiting_bytes: u64,
        bound_bytes: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Storage(e.into())
    }
}

/// Why an online verify gave no report. Only `Engine` says anything about the store.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Another verify of this engine is running; at most one runs at a time.
    #[error("a verify is already running")]
    AlreadyRunning,
    /// The caller's stop condition fired between two steps (nobody waits for the answer).
    #[error("the verify was stopped before it finished")]
    Stopped,
    /// Writes since the verify started made a checkpoint overdue (dirty pages or WAL bytes
    /// twice their trigger); the verify gave way to it rather than let memory or the log grow.
    #[error("the verify gave way to an overdue checkpoint; run it again when writes are quieter")]
    CheckpointDue,
    #[error(transparent)]
    Engine(#[from] Error),
}

impl From<StorageError> for VerifyError {
    fn from(e: StorageError) -> Self {
        VerifyError::Engine(e.into())
    }
}

/// Why `Engine::open` (or an offline tool) did not produce an engine.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// Recovery found something the chosen mode does not accept; the report says what.
    #[error("{0}")]
    Refused(Box<Refusal>),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process (or another engine in this one) has the store open.
    #[error("{} is in use: another process has this store open (its LOCK file is held)", .0.display())]
    Locked(std::path::PathBuf),
    /// No control file, and the caller asked not to create a store.
    #[error(
        "{} holds no store (no control file): check the path; if its control file was lost, \
         restore it from a backup (serve refuses such a directory when it holds data)",
        .0.display()
    )]
    NotAStore(std::path::PathBuf),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Storage(e.into())
    }
}
