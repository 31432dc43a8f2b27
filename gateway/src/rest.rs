//! REST/JSON ↔ gRPC mapping: a routed request and its body become a [`Draft`]; a batch body
//! becomes batch operations (step 10); storaged's [`Reply`] becomes a JSON answer (DESIGN §5).
//! Versions travel as numbers and as `ETag`.
//!
//! REST batch body (`POST /v1/dbs/{db}/tables/{table}/batch`, applied atomically):
//! `{"operations":[{"op":"put","key":"k1","value":{...}},
//!                 {"op":"put","key":"k2","value":{...},"if_version":7},
//!                 {"op":"put","key":"k3","value":{...},"if_absent":true},
//!                 {"op":"delete","key":"k4"}]}`
//! `if_version` / `if_absent` are optional preconditions (at most one per operation).

use bytes::Bytes;
use http::StatusCode;
use photondb_proto::names::{Key, TableRef};
use photondb_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::answer::Answer;
use crate::draft::{Draft, PayloadError, PayloadLimits};
use crate::errors::Refusal;
use crate::json::{self, Document};
use crate::operation::{BatchOp, Operation, Precondition, Reply};
use crate::route::Route;

/// The draft for a storage route; `None` for routes answered by the gateway itself (health).
pub fn draft(route: Route, body: Bytes) -> Result<Option<Draft>, PayloadError> {
    let op = match route {
        Route::PutDoc {
            table,
            key,
            precondition,
        } => {
            return Ok(Some(Draft::Put {
                table,
                key,
                precondition,
                value: body,
            }));
        }
        Route::Batch(table) => return Ok(Some(Draft::RestBatch { table, body })),
        _ if !body.is_empty() => return Err(PayloadError::UnexpectedBody),
        Route::PublicHealth | Route::V1Health => return Ok(None),
        Route::PublicGetDoc { table, key } | Route::GetDoc { table, key } => {
            Operation::Get { table, key }
        }
        Route::ListDbs => Operation::ListDatabases,
        Route::CreateDb(db) => Operation::CreateDatabase(db),
        Route::DropDb(db) => Operation::DropDatabase(db),
        Route::ListTables(db) => Operation::ListTables(db),
        Route::CreateTable(t) => Operation::CreateTable(t),
        Route::DropTable(t) => Operation::DropTable(t),
        Route::DeleteDoc {
            table,
            key,
            precondition,
        } => Operation::Delete {
            table,
            key,
            precondition,
        },
        Route::Scan { table, query } => Operation::Scan {
            table,
            prefix: query.prefix,
            after: query.after,
            limit: query.limit,
        },
        Route::Verify => Operation::Verify,
    };
    Ok(Some(Draft::Ready(op)))
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

/// Step 10 for a REST batch body: its operations, each checked.
pub fn batch(
    table: TableRef,
    body: &[u8],
    limits: &PayloadLimits,
) -> Result<Operation, PayloadError> {
    let value = json::parse(body, limits.max_json_depth + 2)?;
    let raw: RawBatch = serde_json::from_value(value).map_err(|_| PayloadError::BadBatch)?;
    limits.check_batch_len(raw.operations.len())?;
    let ops = raw
        .operations
        .iter()
        .map(|op| batch_op(op, limits))
        .collect::<Result<Vec<_>, _>>()?;
    PayloadLimits::check_batch_bytes(&ops)?;
    Ok(Operation::Batch { table, ops })
}

fn batch_op(raw: &RawBatchOp, limits: &PayloadLimits) -> Result<BatchOp, PayloadError> {
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

/// The JSON answer for storaged's reply.
pub fn answer(reply: Reply) -> Result<Answer, Refusal> {
    use Reply as R;
    Ok(match reply {
        R::ListDatabases(m) => Answer::json(StatusCode::OK, &json!({ "databases": m.databases })),
        R::ListTables(m) => Answer::json(StatusCode::OK, &json!({ "tables": m.tables })),
        R::CreateDatabase(_) | R::CreateTable(_) => {
            Answer::json(StatusCode::CREATED, &json!({ "created": true }))
        }
        R::DropDatabase(_) | R::DropTable(_) => Answer::empty(StatusCode::NO_CONTENT),
        R::Get(m) => document_answer(m.document.ok_or(Refusal::Internal)?)?,
        R::Put(m) => versioned(m.version),
        R::Delete(m) => Answer::json(StatusCode::OK, &json!({ "version": m.version })),
        R::Batch(m) => Answer::json(StatusCode::OK, &json!({ "version": m.version })),
        R::Scan(m) => scan_answer(m)?,
        R::Verify(m) => verify_answer(&m),
    })
}

fn versioned(version: u64) -> Answer {
    Answer::json(StatusCode::OK, &json!({ "version": version }))
        .with_header("etag", format!("\"{version}\""))
}

fn document_json(doc: pb::Document) -> Result<Value, Refusal> {
    // storaged stores only checked JSON objects; anything else is an internal fault.
    let value: Value = serde_json::from_slice(&doc.value).map_err(|_| Refusal::Internal)?;
    Ok(json!({ "key": doc.key, "version": doc.version, "value": value }))
}

fn document_answer(doc: pb::Document) -> Result<Answer, Refusal> {
    let version = doc.version;
    Ok(Answer::json(StatusCode::OK, &document_json(doc)?)
        .with_header("etag", format!("\"{version}\"")))
}

fn scan_answer(m: pb::ScanResponse) -> Result<Answer, Refusal> {
    let docs = m
        .documents
        .into_iter()
        .map(document_json)
        .collect::<Result<Vec<_>, _>>()?;
    let next = (!m.next_start_after.is_empty()).then_some(m.next_start_after);
    Ok(Answer::json(
        StatusCode::OK,
        &json!({ "documents": docs, "next_after": next }),
    ))
}

/// Page numbers only: storaged's reasons are operator detail, not API surface.
fn verify_answer(m: &pb::VerifyResponse) -> Answer {
    let pages: Vec<u64> = m.bad_pages.iter().map(|p| p.page).collect();
    Answer::json(
        StatusCode::OK,
        &json!({ "clean": m.clean, "pages_checked": m.pages_checked, "bad_pages": pages }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::JsonError;
    use photondb_proto::names::NameError;

    const LIMITS: PayloadLimits = PayloadLimits {
        max_json_depth: 8,
        max_batch_operations: 2,
        max_scan_limit: 100,
    };

    fn parse(body: &str) -> Result<Operation, PayloadError> {
        let table = TableRef::parse("d", "t").unwrap();
        batch(table, body.as_bytes(), &LIMITS)
    }

    #[test]
    fn batch_bodies() {
        let ok = parse(
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
        assert_eq!(parse(r#"{"operations":[]}"#), Err(PayloadError::BadBatch));
        assert_eq!(
            parse(r#"{"operations":[{"op":"put","key":"a","value":[1]}]}"#),
            Err(PayloadError::Json(JsonError::NotAnObject))
        );
        assert_eq!(
            parse(r#"{"operations":[{"op":"delete","key":""}]}"#),
            Err(PayloadError::Name(NameError::BadKey))
        );
        assert_eq!(
            parse(r#"{"operations":[{"op":"zap","key":"a"}]}"#),
            Err(PayloadError::BadBatch)
        );
        assert_eq!(
            parse(
                r#"{"operations":[{"op":"put","key":"a","value":{},"if_version":1,"if_absent":true}]}"#
            ),
            Err(PayloadError::BadBatch)
        );
        let three = r#"{"operations":[{"op":"delete","key":"a"},{"op":"delete","key":"b"},{"op":"delete","key":"c"}]}"#;
        assert_eq!(parse(three), Err(PayloadError::TooManyOperations));
    }

    #[test]
    fn batches_past_the_wire_byte_limit_are_refused() {
        let limits = PayloadLimits {
            max_batch_operations: 10,
            ..LIMITS
        };
        let doc = format!("{{\"b\":\"{}\"}}", "x".repeat(900_000));
        let op = |k: usize| format!(r#"{{"op":"put","key":"k{k}","value":{doc}}}"#);
        let body = |n: usize| {
            let ops: Vec<String> = (0..n).map(op).collect();
            format!(r#"{{"operations":[{}]}}"#, ops.join(","))
        };
        let table = || TableRef::parse("d", "t").unwrap();
        assert!(batch(table(), body(4).as_bytes(), &limits).is_ok());
        assert_eq!(
            batch(table(), body(5).as_bytes(), &limits),
            Err(PayloadError::TooManyOperations)
        );
    }
}
