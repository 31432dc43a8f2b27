//! REST/JSON ↔ gRPC mapping: a routed request and its body become a [`Draft`]; storaged's
//! [`Reply`] becomes a JSON answer (DESIGN §5). Versions travel as numbers and as `ETag`.

use bytes::Bytes;
use http::StatusCode;
use photondb_proto::v1 as pb;
use serde_json::{Value, json};

use crate::answer::Answer;
use crate::errors::Refusal;
use crate::operation::{Draft, Operation, PayloadError};
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

/// The JSON answer for storaged's reply.
pub fn answer(reply: crate::upstream::Reply) -> Result<Answer, Refusal> {
    use crate::upstream::Reply as R;
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
