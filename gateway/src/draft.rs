//! A request whose names are checked but whose payload (documents, batches) is not yet: step 10
//! (`pipeline::payload`) checks it only after authentication and policy.

use bytes::Bytes;
use photondb_proto::names::{Key, NameError, TableRef};
use photondb_proto::v1 as pb;

use crate::errors::Refusal;
use crate::json::JsonError;
use crate::operation::{Action, BatchOp, Operation, Precondition, Target};

/// The typed request before step 10.
#[derive(Debug, Clone)]
pub enum Draft {
    Ready(Operation),
    Put {
        table: TableRef,
        key: Key,
        precondition: Option<Precondition>,
        value: Bytes,
    },
    RestBatch {
        table: TableRef,
        body: Bytes,
    },
    GrpcBatch {
        table: TableRef,
        ops: Vec<pb::BatchOperation>,
    },
}

impl Draft {
    /// What policy is asked about.
    pub fn target(&self) -> Target {
        match self {
            Self::Ready(op) => op.target(),
            Self::Put { table, .. }
            | Self::RestBatch { table, .. }
            | Self::GrpcBatch { table, .. } => Target::table(Action::TableWrite, table),
        }
    }
}

/// Why a payload was refused at step 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    Json(JsonError),
    Name(NameError),
    BadBatch,
    /// Too many operations, or too many bytes, for one batch.
    TooManyOperations,
    /// A body was sent to a route that takes none.
    UnexpectedBody,
}

impl From<JsonError> for PayloadError {
    fn from(e: JsonError) -> Self {
        Self::Json(e)
    }
}

impl From<NameError> for PayloadError {
    fn from(e: NameError) -> Self {
        Self::Name(e)
    }
}

impl From<PayloadError> for Refusal {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Json(j) => j.into(),
            PayloadError::Name(n) => n.into(),
            PayloadError::BadBatch => Self::BadBatch,
            PayloadError::TooManyOperations => Self::TooManyOperations,
            PayloadError::UnexpectedBody => Self::UnexpectedBody,
        }
    }
}

/// Limits step 10 enforces (the configured ones, never above the wire contract's).
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimits {
    pub max_json_depth: usize,
    pub max_batch_operations: usize,
    pub max_scan_limit: u32,
}

impl PayloadLimits {
    /// A batch's operation count: at least one, at most the limit.
    pub fn check_batch_len(&self, n: usize) -> Result<(), PayloadError> {
        match n {
            0 => Err(PayloadError::BadBatch),
            n if n > self.max_batch_operations => Err(PayloadError::TooManyOperations),
            _ => Ok(()),
        }
    }

    /// A checked batch's keys and documents together, at most what storaged accepts in one
    /// batch (`MAX_BATCH_BYTES`).
    pub fn check_batch_bytes(ops: &[BatchOp]) -> Result<(), PayloadError> {
        let total: usize = ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value, .. } => key.as_str().len() + value.bytes().len(),
                BatchOp::Delete { key, .. } => key.as_str().len(),
            })
            .sum();
        if total > photondb_proto::limits::MAX_BATCH_BYTES {
            Err(PayloadError::TooManyOperations)
        } else {
            Ok(())
        }
    }
}
