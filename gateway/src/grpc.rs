//! Native gRPC at the edge: `application/grpc` requests to `/photondb.v1.Storage/*` are
//! unframed, decoded with prost into the same typed [`Draft`] as REST (same pipeline), and
//! the upstream reply is re-encoded. Exactly one uncompressed message per request.

use bytes::{BufMut, Bytes, BytesMut};
use photondb_proto::v1 as pb;
use prost::Message;

use photondb_proto::limits::MAX_BATCH_OPERATIONS;
use photondb_proto::names::{Key, MAX_KEY_BYTES, Name, NameError, TableRef};

use crate::draft::{Draft, PayloadError, PayloadLimits};
use crate::errors::Refusal;
use crate::json;
use crate::operation::{BatchOp, Kind, ListPage, Operation, Precondition, Reply};

/// The gRPC service the gateway accepts.
pub const SERVICE: &str = "photondb.v1.Storage";

/// Whether a `content-type` announces gRPC (`application/grpc`, `application/grpc+proto`).
pub fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"))
}

/// A `photondb.v1.Storage` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcMethod {
    ListDatabases,
    CreateDatabase,
    DropDatabase,
    ListTables,
    CreateTable,
    DropTable,
    Get,
    Put,
    Delete,
    Scan,
    Batch,
}

/// Why a gRPC request could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcError {
    UnknownMethod,
    Compressed,
    BadFrame,
    BadMessage,
    /// A batch with more operations than the wire contract allows, counted before decoding.
    TooManyOperations,
    Name(NameError),
}

impl From<NameError> for GrpcError {
    fn from(e: NameError) -> Self {
        Self::Name(e)
    }
}

impl From<GrpcError> for Refusal {
    fn from(e: GrpcError) -> Self {
        match e {
            GrpcError::UnknownMethod => Self::GrpcUnknownMethod,
            GrpcError::Compressed => Self::GrpcCompressed,
            GrpcError::BadFrame | GrpcError::BadMessage => Self::GrpcBadMessage,
            GrpcError::TooManyOperations => Self::TooManyOperations,
            GrpcError::Name(n) => n.into(),
        }
    }
}

impl GrpcMethod {
    /// What the method does (its label).
    pub fn kind(self) -> Kind {
        match self {
            Self::ListDatabases => Kind::ListDatabases,
            Self::CreateDatabase => Kind::CreateDatabase,
            Self::DropDatabase => Kind::DropDatabase,
            Self::ListTables => Kind::ListTables,
            Self::CreateTable => Kind::CreateTable,
            Self::DropTable => Kind::DropTable,
            Self::Get => Kind::Get,
            Self::Put => Kind::Put,
            Self::Delete => Kind::Delete,
            Self::Scan => Kind::Scan,
            Self::Batch => Kind::Batch,
        }
    }

    /// The method named by decoded path segments `[SERVICE, method]`.
    pub fn from_segments(segs: &[String]) -> Result<Self, GrpcError> {
        match segs {
            [service, method] if service == SERVICE => Self::from_name(method),
            _ => Err(GrpcError::UnknownMethod),
        }
    }

    fn from_name(name: &str) -> Result<Self, GrpcError> {
        Ok(match name {
            "ListDatabases" => Self::ListDatabases,
            "CreateDatabase" => Self::CreateDatabase,
            "DropDatabase" => Self::DropDatabase,
            "ListTables" => Self::ListTables,
            "CreateTable" => Self::CreateTable,
            "DropTable" => Self::DropTable,
            "Get" => Self::Get,
            "Put" => Self::Put,
            "Delete" => Self::Delete,
            "Scan" => Self::Scan,
            "Batch" => Self::Batch,
            _ => return Err(GrpcError::UnknownMethod),
        })
    }

    /// Decodes the request body (one length-prefixed message) into a draft operation.
    pub fn decode(self, body: &[u8]) -> Result<Draft, GrpcError> {
        let msg = unframe(body)?;
        match self {
            Self::ListDatabases => {
                let m = decode_as::<pb::ListDatabasesRequest>(msg)?;
                let page = list_page(&m.start_after, m.limit)?;
                Ok(Draft::Ready(Operation::ListDatabases(page)))
            }
            Self::CreateDatabase => Ok(Draft::Ready(Operation::CreateDatabase(Name::parse(
                &decode_as::<pb::CreateDatabaseRequest>(msg)?.db,
            )?))),
            Self::DropDatabase => Ok(Draft::Ready(Operation::DropDatabase(Name::parse(
                &decode_as::<pb::DropDatabaseRequest>(msg)?.db,
            )?))),
            Self::ListTables => {
                let m = decode_as::<pb::ListTablesRequest>(msg)?;
                let page = list_page(&m.start_after, m.limit)?;
                Ok(Draft::Ready(Operation::ListTables(
                    Name::parse(&m.db)?,
                    page,
                )))
            }
            Self::CreateTable => Ok(Draft::Ready(Operation::CreateTable(table(
                decode_as::<pb::CreateTableRequest>(msg)?.table,
            )?))),
            Self::DropTable => Ok(Draft::Ready(Operation::DropTable(table(
                decode_as::<pb::DropTableRequest>(msg)?.table,
            )?))),
            Self::Get => get(decode_as(msg)?),
            Self::Put => put(decode_as(msg)?),
            Self::Delete => delete(decode_as(msg)?),
            Self::Scan => scan(decode_as(msg)?),
            Self::Batch => {
                // An empty operation is 2 bytes on the wire and ~70 decoded: count first.
                if count_field(msg, BATCH_OPERATIONS_FIELD)? > MAX_BATCH_OPERATIONS {
                    return Err(GrpcError::TooManyOperations);
                }
                batch(decode_as(msg)?)
            }
        }
    }
}

/// `BatchRequest.operations`.
const BATCH_OPERATIONS_FIELD: u32 = 2;

/// How often top-level field `field` occurs in an encoded message, without decoding it.
fn count_field(mut msg: &[u8], field: u32) -> Result<usize, GrpcError> {
    use prost::encoding::{DecodeContext, decode_key, skip_field};
    let mut count = 0;
    while !msg.is_empty() {
        let (tag, wire_type) = decode_key(&mut msg).map_err(|_| GrpcError::BadMessage)?;
        count += usize::from(tag == field);
        skip_field(wire_type, tag, &mut msg, DecodeContext::default())
            .map_err(|_| GrpcError::BadMessage)?;
    }
    Ok(count)
}

fn decode_as<M: Message + Default>(msg: &[u8]) -> Result<M, GrpcError> {
    M::decode(msg).map_err(|_| GrpcError::BadMessage)
}

fn table(t: Option<pb::TableRef>) -> Result<TableRef, GrpcError> {
    let t = t.ok_or(GrpcError::Name(NameError::BadName))?;
    Ok(TableRef::parse(&t.db, &t.table)?)
}

fn get(m: pb::GetRequest) -> Result<Draft, GrpcError> {
    Ok(Draft::Ready(Operation::Get {
        table: table(m.table)?,
        key: Key::parse(&m.key)?,
    }))
}

fn put(m: pb::PutRequest) -> Result<Draft, GrpcError> {
    Ok(Draft::Put {
        table: table(m.table)?,
        key: Key::parse(&m.key)?,
        precondition: Precondition::from_pb(m.precondition),
        value: Bytes::from(m.value),
    })
}

fn delete(m: pb::DeleteRequest) -> Result<Draft, GrpcError> {
    let (table, key) = (table(m.table)?, Key::parse(&m.key)?);
    Ok(Draft::Ready(Operation::Delete {
        table,
        key,
        precondition: Precondition::from_pb(m.precondition),
    }))
}

fn scan(m: pb::ScanRequest) -> Result<Draft, GrpcError> {
    let too_long = m.prefix.len() > MAX_KEY_BYTES || m.start_after.len() > MAX_KEY_BYTES;
    if too_long {
        return Err(GrpcError::Name(NameError::BadKey));
    }
    let table = table(m.table)?;
    Ok(Draft::Ready(Operation::Scan {
        table,
        prefix: m.prefix,
        after: m.start_after,
        limit: m.limit,
    }))
}

/// A list's cursor is empty or a name, as over REST.
fn list_page(start_after: &str, limit: u32) -> Result<ListPage, GrpcError> {
    let after = match start_after {
        "" => None,
        name => Some(Name::parse(name)?),
    };
    Ok(ListPage { after, limit })
}

fn batch(m: pb::BatchRequest) -> Result<Draft, GrpcError> {
    Ok(Draft::GrpcBatch {
        table: table(m.table)?,
        ops: m.operations,
    })
}

/// Step 10 for a gRPC batch: its operations, each checked.
pub fn batch_ops(
    table: TableRef,
    ops: Vec<pb::BatchOperation>,
    limits: &PayloadLimits,
) -> Result<Operation, PayloadError> {
    limits.check_batch_len(ops.len())?;
    let ops = ops
        .into_iter()
        .map(|op| batch_op(op, limits))
        .collect::<Result<Vec<_>, _>>()?;
    PayloadLimits::check_batch_bytes(&ops)?;
    Ok(Operation::Batch { table, ops })
}

fn batch_op(op: pb::BatchOperation, limits: &PayloadLimits) -> Result<BatchOp, PayloadError> {
    use pb::batch_operation::Op;
    match op.op.ok_or(PayloadError::BadBatch)? {
        Op::Put(p) => Ok(BatchOp::Put {
            key: Key::parse(&p.key)?,
            value: json::document(Bytes::from(p.value), limits.max_json_depth)?,
            precondition: Precondition::from_pb(p.precondition),
        }),
        Op::Delete(d) => Ok(BatchOp::Delete {
            key: Key::parse(&d.key)?,
            precondition: Precondition::from_pb(d.precondition),
        }),
    }
}

/// The single message of a unary request: flag 0 (uncompressed), a big-endian length, and
/// exactly that many bytes.
pub(crate) fn unframe(body: &[u8]) -> Result<&[u8], GrpcError> {
    let (header, msg) = body.split_at_checked(5).ok_or(GrpcError::BadFrame)?;
    match header[0] {
        0 => {}
        1 => return Err(GrpcError::Compressed),
        _ => return Err(GrpcError::BadFrame),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    (len == msg.len()).then_some(msg).ok_or(GrpcError::BadFrame)
}

/// Frames one message for a gRPC response body.
pub(crate) fn frame<M: Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    // Encoding into a buffer with enough capacity cannot fail.
    let _ = m.encode(&mut out);
    out.freeze()
}

/// The framed response message for an upstream reply.
pub fn encode_reply(reply: &Reply) -> Bytes {
    match reply {
        Reply::ListDatabases(m) => frame(m),
        Reply::CreateDatabase(m) => frame(m),
        Reply::DropDatabase(m) => frame(m),
        Reply::ListTables(m) => frame(m),
        Reply::CreateTable(m) => frame(m),
        Reply::DropTable(m) => frame(m),
        Reply::Get(m) => frame(m),
        Reply::Put(m) => frame(m),
        Reply::Delete(m) => frame(m),
        Reply::Scan(m) => frame(m),
        Reply::Batch(m) => frame(m),
        Reply::Verify(m) => frame(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed<M: Message>(m: &M) -> Vec<u8> {
        frame(m).to_vec()
    }

    #[test]
    fn decodes_a_put() {
        let req = pb::PutRequest {
            table: Some(pb::TableRef {
                db: "d".into(),
                table: "t".into(),
            }),
            key: "k".into(),
            value: b"{}".to_vec(),
            precondition: None,
        };
        let draft = GrpcMethod::Put.decode(&framed(&req)).unwrap();
        assert!(matches!(draft, Draft::Put { .. }));
    }

    #[test]
    fn batches_are_counted_on_the_wire_before_decoding() {
        let batch = |n: usize| pb::BatchRequest {
            table: Some(pb::TableRef {
                db: "d".into(),
                table: "t".into(),
            }),
            operations: vec![pb::BatchOperation::default(); n],
        };
        let at_limit = framed(&batch(MAX_BATCH_OPERATIONS));
        assert!(GrpcMethod::Batch.decode(&at_limit).is_ok());
        // 2 bytes per empty operation on the wire: refused before any is decoded.
        let past = framed(&batch(MAX_BATCH_OPERATIONS + 1));
        assert_eq!(
            GrpcMethod::Batch.decode(&past).unwrap_err(),
            GrpcError::TooManyOperations
        );
        let mut truncated = framed(&batch(3));
        truncated.truncate(truncated.len() - 1);
        let len = (truncated.len() - 5) as u32;
        truncated[1..5].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            GrpcMethod::Batch.decode(&truncated).unwrap_err(),
            GrpcError::BadMessage
        );
    }

    #[test]
    fn refuses_bad_frames_and_names() {
        let req = pb::CreateDatabaseRequest { db: "Bad!".into() };
        let body = framed(&req);
        assert_eq!(
            GrpcMethod::CreateDatabase.decode(&body).unwrap_err(),
            GrpcError::Name(NameError::BadName)
        );
        assert_eq!(
            GrpcMethod::CreateDatabase.decode(&body[..3]).unwrap_err(),
            GrpcError::BadFrame
        );
        let mut compressed = body.clone();
        compressed[0] = 1;
        assert_eq!(
            GrpcMethod::CreateDatabase.decode(&compressed).unwrap_err(),
            GrpcError::Compressed
        );
        let segs = vec![SERVICE.to_string(), "Nope".to_string()];
        assert_eq!(
            GrpcMethod::from_segments(&segs),
            Err(GrpcError::UnknownMethod)
        );
    }
}
