//! Typed storage operations: what a request asks for ([`Draft`], before its payload is
//! checked), what policy decides on ([`Target`]), and what is forwarded ([`Operation`]).
//!
//! REST batch body (`POST /v1/dbs/{db}/tables/{table}/batch`, applied atomically):
//! `{"operations":[{"op":"put","key":"k1","value":{...}},
//!                 {"op":"put","key":"k2","value":{...},"if_version":7},
//!                 {"op":"put","key":"k3","value":{...},"if_absent":true},
//!                 {"op":"delete","key":"k4"}]}`
//! `if_version` / `if_absent` are optional preconditions (at most one per operation).

use bytes::Bytes;
use photondb_proto::v1 as pb;
use serde::Deserialize;

use crate::json::{self, Document, JsonError};
use crate::names::{Key, Name, NameError, TableRef};
use crate::route::Precondition;

/// A storage operation whose every field has been checked: the only thing forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    ListDatabases,
    CreateDatabase(Name),
    DropDatabase(Name),
    ListTables(Name),
    CreateTable(TableRef),
    DropTable(TableRef),
    Get {
        table: TableRef,
        key: Key,
    },
    Put {
        table: TableRef,
        key: Key,
        value: Document,
        precondition: Option<Precondition>,
    },
    Delete {
        table: TableRef,
        key: Key,
        precondition: Option<Precondition>,
    },
    Scan {
        table: TableRef,
        prefix: String,
        after: String,
        limit: u32,
    },
    Batch {
        table: TableRef,
        ops: Vec<BatchOp>,
    },
    Verify,
}

/// One operation of an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        key: Key,
        value: Document,
        precondition: Option<Precondition>,
    },
    Delete {
        key: Key,
        precondition: Option<Precondition>,
    },
}

impl Operation {
    /// Reads are retried upstream and still served in read-only mode.
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Self::ListDatabases
                | Self::ListTables(_)
                | Self::Get { .. }
                | Self::Scan { .. }
                | Self::Verify
        )
    }

    /// A stable label for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ListDatabases => "list_databases",
            Self::CreateDatabase(_) => "create_database",
            Self::DropDatabase(_) => "drop_database",
            Self::ListTables(_) => "list_tables",
            Self::CreateTable(_) => "create_table",
            Self::DropTable(_) => "drop_table",
            Self::Get { .. } => "get",
            Self::Put { .. } => "put",
            Self::Delete { .. } => "delete",
            Self::Scan { .. } => "scan",
            Self::Batch { .. } => "batch",
            Self::Verify => "verify",
        }
    }

    /// The action and resource policy decides on.
    pub fn target(&self) -> Target {
        use Action::*;
        match self {
            Self::ListDatabases => Target::all(DbList),
            Self::CreateDatabase(db) => Target::db(DbCreate, db),
            Self::DropDatabase(db) => Target::db(DbDelete, db),
            Self::ListTables(db) => Target::db(DbList, db),
            Self::CreateTable(t) => Target::table(TableCreate, t),
            Self::DropTable(t) => Target::table(TableDelete, t),
            Self::Get { table, .. } | Self::Scan { table, .. } => Target::table(TableRead, table),
            Self::Put { table, .. } | Self::Delete { table, .. } | Self::Batch { table, .. } => {
                Target::table(TableWrite, table)
            }
            Self::Verify => Target::all(StorageInspect),
        }
    }
}

/// Permissions of DESIGN §4 that the edge asks policy about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    TableRead,
    TableWrite,
    TableCreate,
    TableDelete,
    DbCreate,
    DbDelete,
    DbList,
    StorageInspect,
    HealthRead,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableRead => "table.read",
            Self::TableWrite => "table.write",
            Self::TableCreate => "table.create",
            Self::TableDelete => "table.delete",
            Self::DbCreate => "db.create",
            Self::DbDelete => "db.delete",
            Self::DbList => "db.list",
            Self::StorageInspect => "storage.inspect",
            Self::HealthRead => "health.read",
        }
    }
}

/// A policy resource: `*`, `db:<db>`, `db:<db>/table:<table>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    All,
    Db(Name),
    Table(TableRef),
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Db(db) => write!(f, "db:{db}"),
            Self::Table(t) => write!(f, "db:{}/table:{}", t.db, t.table),
        }
    }
}

/// What policy decides on: an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub action: Action,
    pub resource: Resource,
}

impl Target {
    pub fn all(action: Action) -> Self {
        Self {
            action,
            resource: Resource::All,
        }
    }

    fn db(action: Action, db: &Name) -> Self {
        Self {
            action,
            resource: Resource::Db(db.clone()),
        }
    }

    fn table(action: Action, t: &TableRef) -> Self {
        Self {
            action,
            resource: Resource::Table(t.clone()),
        }
    }
}

/// A request whose names are checked but whose payload (documents, batches) is not yet:
/// step 10 ([`Draft::check`]) runs only after authentication and policy.
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

/// Why a payload was refused at step 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    Json(JsonError),
    Name(NameError),
    BadBatch,
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

/// Limits step 10 enforces.
#[derive(Debug, Clone, Copy)]
pub struct PayloadLimits {
    pub max_json_depth: usize,
    pub max_batch_operations: usize,
    pub max_scan_limit: u32,
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

    /// Whether the operation only reads (known before the payload is checked).
    pub fn is_read(&self) -> bool {
        matches!(self, Self::Ready(op) if op.is_read())
    }

    /// Step 10: checks the payload and yields the operation to forward.
    pub fn check(self, limits: &PayloadLimits) -> Result<Operation, PayloadError> {
        match self {
            Self::Ready(op) => Ok(cap_scan(op, limits.max_scan_limit)),
            Self::Put {
                table,
                key,
                precondition,
                value,
            } => {
                let value = json::document(value, limits.max_json_depth)?;
                Ok(Operation::Put {
                    table,
                    key,
                    value,
                    precondition,
                })
            }
            Self::RestBatch { table, body } => rest_batch(table, &body, limits),
            Self::GrpcBatch { table, ops } => grpc_batch(table, ops, limits),
        }
    }
}

fn cap_scan(op: Operation, max: u32) -> Operation {
    match op {
        Operation::Scan {
            table,
            prefix,
            after,
            limit,
        } => {
            let limit = if limit == 0 { max } else { limit.min(max) };
            Operation::Scan {
                table,
                prefix,
                after,
                limit,
            }
        }
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    operations: Vec<RawBatchOp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatchOp {
    op: String,
    key: String,
    value: Option<serde_json::Value>,
    if_version: Option<u64>,
    if_absent: Option<bool>,
}

fn rest_batch(
    table: TableRef,
    body: &[u8],
    limits: &PayloadLimits,
) -> Result<Operation, PayloadError> {
    let value = json::parse(body, limits.max_json_depth + 2)?;
    let raw: RawBatch = serde_json::from_value(value).map_err(|_| PayloadError::BadBatch)?;
    check_batch_len(raw.operations.len(), limits)?;
    let ops = raw
        .operations
        .iter()
        .map(|op| rest_batch_op(op, limits))
        .collect::<Result<_, _>>()?;
    Ok(Operation::Batch { table, ops })
}

fn rest_batch_op(raw: &RawBatchOp, limits: &PayloadLimits) -> Result<BatchOp, PayloadError> {
    let key = Key::parse(&raw.key)?;
    let precondition = match (raw.if_version, raw.if_absent) {
        (None, None | Some(false)) => None,
        (Some(v), None | Some(false)) => Some(Precondition::IfVersion(v)),
        (None, Some(true)) => Some(Precondition::IfAbsent),
        (Some(_), Some(true)) => return Err(PayloadError::BadBatch),
    };
    match (raw.op.as_str(), &raw.value) {
        ("put", Some(v)) => {
            let value = checked_value(v, limits)?;
            Ok(BatchOp::Put {
                key,
                value,
                precondition,
            })
        }
        ("delete", None) => Ok(BatchOp::Delete { key, precondition }),
        _ => Err(PayloadError::BadBatch),
    }
}

fn checked_value(v: &serde_json::Value, limits: &PayloadLimits) -> Result<Document, PayloadError> {
    let doc = json::document_from_value(v)?;
    // The depth was bounded for the whole body; re-check the document on its own.
    Ok(json::document(doc.bytes().clone(), limits.max_json_depth)?)
}

fn check_batch_len(n: usize, limits: &PayloadLimits) -> Result<(), PayloadError> {
    match n {
        0 => Err(PayloadError::BadBatch),
        n if n > limits.max_batch_operations => Err(PayloadError::TooManyOperations),
        _ => Ok(()),
    }
}

fn grpc_batch(
    table: TableRef,
    ops: Vec<pb::BatchOperation>,
    limits: &PayloadLimits,
) -> Result<Operation, PayloadError> {
    check_batch_len(ops.len(), limits)?;
    let ops = ops
        .into_iter()
        .map(|op| grpc_batch_op(op, limits))
        .collect::<Result<_, _>>()?;
    Ok(Operation::Batch { table, ops })
}

fn grpc_batch_op(op: pb::BatchOperation, limits: &PayloadLimits) -> Result<BatchOp, PayloadError> {
    use pb::batch_operation::Op;
    match op.op.ok_or(PayloadError::BadBatch)? {
        Op::Put(p) => Ok(BatchOp::Put {
            key: Key::parse(&p.key)?,
            value: json::document(Bytes::from(p.value), limits.max_json_depth)?,
            precondition: from_pb_precondition(p.precondition),
        }),
        Op::Delete(d) => Ok(BatchOp::Delete {
            key: Key::parse(&d.key)?,
            precondition: from_pb_precondition(d.precondition),
        }),
    }
}

/// A protobuf precondition as the typed one (an empty `oneof` means none).
pub fn from_pb_precondition(p: Option<pb::Precondition>) -> Option<Precondition> {
    use pb::precondition::Condition;
    match p?.condition? {
        Condition::IfVersion(v) => Some(Precondition::IfVersion(v)),
        Condition::IfAbsent(true) => Some(Precondition::IfAbsent),
        Condition::IfAbsent(false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PayloadLimits = PayloadLimits {
        max_json_depth: 8,
        max_batch_operations: 2,
        max_scan_limit: 100,
    };

    fn batch(body: &str) -> Result<Operation, PayloadError> {
        let table = TableRef::parse("d", "t").unwrap();
        Draft::RestBatch {
            table,
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
        .check(&LIMITS)
    }

    #[test]
    fn batch_bodies() {
        let ok = batch(
            r#"{"operations":[{"op":"put","key":"a","value":{"x":1},"if_version":3},{"op":"delete","key":"b"}]}"#,
        );
        let Ok(Operation::Batch { ops, .. }) = ok else {
            panic!("{ok:?}")
        };
        assert!(matches!(
            &ops[0],
            BatchOp::Put {
                precondition: Some(Precondition::IfVersion(3)),
                ..
            }
        ));
        assert_eq!(batch(r#"{"operations":[]}"#), Err(PayloadError::BadBatch));
        assert_eq!(
            batch(r#"{"operations":[{"op":"put","key":"a","value":[1]}]}"#),
            Err(PayloadError::Json(JsonError::NotAnObject))
        );
        assert_eq!(
            batch(r#"{"operations":[{"op":"delete","key":""}]}"#),
            Err(PayloadError::Name(NameError::BadKey))
        );
        assert_eq!(
            batch(r#"{"operations":[{"op":"zap","key":"a"}]}"#),
            Err(PayloadError::BadBatch)
        );
        let three = r#"{"operations":[{"op":"delete","key":"a"},{"op":"delete","key":"b"},{"op":"delete","key":"c"}]}"#;
        assert_eq!(batch(three), Err(PayloadError::TooManyOperations));
    }

    #[test]
    fn scan_limit_is_capped() {
        let table = TableRef::parse("d", "t").unwrap();
        let scan = Operation::Scan {
            table,
            prefix: String::new(),
            after: String::new(),
            limit: 0,
        };
        let Ok(Operation::Scan { limit, .. }) = Draft::Ready(scan).check(&LIMITS) else {
            panic!()
        };
        assert_eq!(limit, 100);
    }
}
