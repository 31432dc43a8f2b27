//! The one place engine errors become gRPC statuses. Messages on the wire are fixed phrases or
//! the engine's validation text written for clients; paths, page numbers and I/O errors only
//! reach the log, under the request id.

use tonic::{Code, Status};

use crate::context::CallContext;
use crate::engine::{Error, StorageError};
use crate::wire::Invalid;

/// Why a call was refused before reaching the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Overloaded,
    DeadlineExceeded,
    /// The request breaks the wire contract; the text says how, and nothing more.
    Invalid(Invalid),
    /// Another verify is running: FAILED_PRECONDITION, because the caller should wait for
    /// that one's answer, not retry. RESOURCE_EXHAUSTED would read as overload (the gateway
    /// counts it against storaged's health), and ABORTED is one some clients retry by default.
    VerifyRunning,
    /// A verify gave way to an overdue checkpoint (writes outgrew what it may hold off):
    /// ABORTED, a conflict with concurrent work that running it again later resolves.
    VerifyGaveWay,
    /// A verify passed its deadline between two steps and stopped.
    VerifyStopped,
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Self {
        Refusal::Invalid(invalid)
    }
}

/// A request that breaks the wire contract, answered through `from_refusal` (so `?` works).
impl From<Invalid> for Status {
    fn from(invalid: Invalid) -> Self {
        from_refusal(Refusal::Invalid(invalid))
    }
}

/// Whether an error means the disk can no longer be trusted and the daemon must stop.
pub fn is_fatal(err: &Error) -> bool {
    matches!(
        err,
        Error::Storage(StorageError::Io(_) | StorageError::PreviousIo)
    )
}

pub fn from_refusal(refusal: Refusal) -> Status {
    match refusal {
        Refusal::Overloaded => Status::resource_exhausted("storaged is overloaded; retry later"),
        Refusal::DeadlineExceeded => {
            Status::deadline_exceeded("deadline passed before the work started")
        }
        Refusal::Invalid(invalid) => Status::invalid_argument(invalid.to_string()),
        Refusal::VerifyRunning => Status::failed_precondition("a verify is already running"),
        Refusal::VerifyGaveWay => Status::aborted(
            "the verify stopped to let writes checkpoint; run it again when writes are quieter",
        ),
        Refusal::VerifyStopped => {
            Status::deadline_exceeded("deadline passed before the verify finished")
        }
    }
}

/// Maps an engine error, logging what the client must not see.
pub fn from_engine(err: &Error, ctx: &CallContext) -> Status {
    match err {
        Error::NotFound(what) => Status::not_found(format!("{what} not found")),
        Error::AlreadyExists(what) => Status::already_exists(format!("{what} already exists")),
        Error::VersionMismatch { .. } => Status::failed_precondition("version mismatch"),
        Error::InvalidArgument(text) => Status::invalid_argument(text.clone()),
        Error::Internal(detail) => {
            tracing::error!(request_id = %ctx.request_id, detail = %detail, "internal error (a bug, not damage)");
            Status::internal("internal error")
        }
        Error::ArchiveBehind { .. } => {
            tracing::warn!(request_id = %ctx.request_id, error = %err, "write refused: the WAL archive is behind");
            Status::resource_exhausted(
                "writes are paused: the WAL archive is behind; the operator has been alerted",
            )
        }
        Error::Storage(StorageError::Corrupted { page, detail }) => {
            tracing::error!(request_id = %ctx.request_id, page = ?page, detail = %detail, "corruption detected");
            Status::new(
                Code::DataLoss,
                "data corruption detected; the operator has been alerted",
            )
        }
        Error::Storage(storage) => {
            tracing::error!(request_id = %ctx.request_id, error = %storage, "storage failure; stopping");
            Status::unavailable("storage unavailable")
        }
    }
}
