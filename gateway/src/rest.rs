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
//!
//! Documents keep their bytes both ways: a batch's `value` is cut from the body as the client
//! wrote it, and an answer embeds the stored bytes verbatim (`RawValue`), never re-encoded.

use bytes::Bytes;
use http::StatusCode;
use photondb_proto::names::{Key, TableRef};
use photondb_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

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
        Route::ListDbs(page) => Operation::ListDatabases(page),
        Route::CreateDb(db) => Operation::CreateDatabase(db),
        Route::DropDb(db) => Operation::DropDatabase(db),
        Route::ListTables(db, page) => Operation::ListTables(db, page),
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
    value: Option<Box<RawValue>>,
    if_version: Option<u64>,
    if_absent: Option<bool>,
}

/// Step 10 for a REST batch body: its operations, each checked.
pub fn batch(
    table: TableRef,
    body: &[u8],
    limits: &PayloadLimits,
) -> Result<Operation, PayloadError> {
    // The envelope and its `operations` array are two levels above a document.
    json::check(body, limits.max_json_depth + 2)?;
    let raw: RawBatch = serde_json::from_slice(body).map_err(|_| PayloadError::BadBatch)?;
    limits.check_batch_len(raw.operations.len())?;
    let ops = raw
        .operations
        .into_iter()
        .map(|op| batch_op(op, limits))
        .collect::<Result<Vec<_>, _>>()?;
    PayloadLimits::check_batch_bytes(&ops)?;
    Ok(Operation::Batch { table, ops })
}

fn batch_op(raw: RawBatchOp, limits: &PayloadLimits) -> Result<BatchOp, PayloadError> {
    let key = Key::parse(&raw.key)?;
    let precondition = match (raw.if_version, raw.if_absent) {
        (None, None | Some(false)) => None,
        (Some(v), None | Some(false)) => Some(Precondition::IfVersion(v)),
        (None, Some(true)) => Some(Precondition::IfAbsent),
        (Some(_), Some(true)) => return Err(PayloadError::BadBatch),
    };
    match (raw.op.as_str(), raw.value) {
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

/// A batch value, its bytes as the client wrote them, checked as a document on its own (the
/// body's depth bound allowed two more levels).
fn checked_value(v: Box<RawValue>, limits: &PayloadLimits) -> Result<Document, PayloadError> {
    let bytes = Bytes::from(String::from(Box::<str>::from(v)));
    Ok(json::document(bytes, limits.max_json_depth)?)
}

/// The JSON answer for storaged's reply.
pub fn answer(reply: Reply) -> Result<Answer, Refusal> {
    use Reply as R;
    Ok(match reply {
        R::ListDatabases(m) => names_answer("databases", &m.databases, &m.next_start_after),
        R::ListTables(m) => names_answer("tables", &m.tables, &m.next_start_after),
        R::CreateDatabase(_) | R::CreateTable(_) => {
            Answer::json(StatusCode::CREATED, &json!({ "created": true }))
        }
        R::DropDatabase(_) | R::DropTable(_) => Answer::empty(StatusCode::NO_CONTENT),
        R::Get(m) => document_answer(m.document.as_ref().ok_or(Refusal::Internal)?)?,
        R::Put(m) => versioned(m.version),
        R::Delete(m) => Answer::json(StatusCode::OK, &json!({ "version": m.version })),
        R::Batch(m) => Answer::json(StatusCode::OK, &json!({ "version": m.version })),
        R::Scan(m) => scan_answer(&m)?,
        R::Verify(m) => verify_answer(&m),
    })
}

fn versioned(version: u64) -> Answer {
    Answer::json(StatusCode::OK, &json!({ "version": version }))
        .with_header("etag", format!("\"{version}\""))
}

/// A document as REST shows it; `value` is written out as storaged's bytes, verbatim.
#[derive(Serialize)]
struct DocumentJson<'a> {
    key: &'a str,
    version: u64,
    value: &'a RawValue,
}

/// A scan page: `next_after` is `null` on the last page.
#[derive(Serialize)]
struct ScanJson<'a> {
    documents: Vec<DocumentJson<'a>>,
    next_after: Option<&'a str>,
}

fn document_json(doc: &pb::Document) -> Result<DocumentJson<'_>, Refusal> {
    // storaged stores only checked JSON objects; anything else is an internal fault.
    let value = serde_json::from_slice(&doc.value).map_err(|_| Refusal::Internal)?;
    Ok(DocumentJson {
        key: &doc.key,
        version: doc.version,
        value,
    })
}

fn document_answer(doc: &pb::Document) -> Result<Answer, Refusal> {
    Ok(Answer::json(StatusCode::OK, &document_json(doc)?)
        .with_header("etag", format!("\"{}\"", doc.version)))
}

/// `next_after` of a page: the last key or name on it, `null` on the last page.
fn next_after(next_start_after: &str) -> Option<&str> {
    (!next_start_after.is_empty()).then_some(next_start_after)
}

/// A page of names, `{"<field>": [...], "next_after": "name" | null}`, paged as a scan is.
fn names_answer(field: &str, names: &[String], next_start_after: &str) -> Answer {
    let next_after = next_after(next_start_after);
    Answer::json(
        StatusCode::OK,
        &json!({ field: names, "next_after": next_after }),
    )
}

fn scan_answer(m: &pb::ScanResponse) -> Result<Answer, Refusal> {
    let documents = m
        .documents
        .iter()
        .map(document_json)
        .collect::<Result<Vec<_>, _>>()?;
    let next_after = next_after(&m.next_start_after);
    Ok(Answer::json(
        StatusCode::OK,
        &ScanJson {
            documents,
            next_after,
        },
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

    /// Big integers, `-0`, exponents, escapes and spacing: what re-encoding would change.
    const FAITHFUL: &str = concat!(
        r#"{"n":12345678901234567890123,"z":-0,"f":1E2,"#,
        r#""s":"\u00e9\n\"","o":{ "big" : -1.5e-300 }}"#,
    );

    #[test]
    fn batch_values_keep_their_bytes() {
        let body = format!(r#"{{"operations":[{{"op":"put","key":"a","value": {FAITHFUL} }}]}}"#);
        let ok = parse(&body);
        let Ok(Operation::Batch { ops, .. }) = ok else {
            panic!("{ok:?}")
        };
        let [BatchOp::Put { value, .. }] = ops.as_slice() else {
            panic!("{ops:?}")
        };
        assert_eq!(&value.bytes()[..], FAITHFUL.as_bytes());
    }

    #[test]
    fn batches_with_repeated_names_are_refused() {
        let bodies = [
            r#"{"operations":[{"op":"put","key":"a","value":{"x":1,"x":2}}]}"#,
            r#"{"operations":[{"op":"put","key":"a","value":{"x":{"y":1,"\u0079":2}}}]}"#,
            r#"{"operations":[{"op":"put","key":"a","key":"b","value":{}}]}"#,
        ];
        for body in bodies {
            let refused = Err(PayloadError::Json(JsonError::DuplicateKey));
            assert_eq!(parse(body), refused, "{body}");
        }
    }

    fn stored(key: &str, value: &str, version: u64) -> pb::Document {
        pb::Document {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            version,
        }
    }

    /// A document as a GET answer shows it.
    fn shown(key: &str, version: u64, value: &str) -> String {
        format!(r#"{{"key":"{key}","version":{version},"value":{value}}}"#)
    }

    fn get(doc: pb::Document) -> Result<Answer, Refusal> {
        answer(Reply::Get(pb::GetResponse {
            document: Some(doc),
        }))
    }

    #[test]
    fn answers_embed_the_stored_bytes() {
        let got = get(stored("k", FAITHFUL, 7)).unwrap();
        assert_eq!(&got.body[..], shown("k", 7, FAITHFUL).as_bytes());
        assert!(got.headers.contains(&("etag", "\"7\"".into())));

        let page = pb::ScanResponse {
            documents: vec![stored("a", FAITHFUL, 1), stored("b", "{}", 2)],
            next_start_after: "b".into(),
        };
        let got = answer(Reply::Scan(page)).unwrap();
        let (a, b) = (shown("a", 1, FAITHFUL), shown("b", 2, "{}"));
        let expected = format!(r#"{{"documents":[{a},{b}],"next_after":"b"}}"#);
        assert_eq!(&got.body[..], expected.as_bytes());
        let last = pb::ScanResponse {
            documents: Vec::new(),
            next_start_after: String::new(),
        };
        let got = answer(Reply::Scan(last)).unwrap();
        assert_eq!(&got.body[..], br#"{"documents":[],"next_after":null}"#);
    }

    #[test]
    fn list_answers_carry_next_after_as_scans_do() {
        let json_of = |reply| {
            let got = answer(reply).unwrap();
            serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()
        };
        let page = pb::ListDatabasesResponse {
            databases: vec!["a".into(), "b".into()],
            next_start_after: "b".into(),
        };
        assert_eq!(
            json_of(Reply::ListDatabases(page)),
            json!({ "databases": ["a", "b"], "next_after": "b" })
        );
        let last = pb::ListTablesResponse {
            tables: vec!["t".into()],
            next_start_after: String::new(),
        };
        assert_eq!(
            json_of(Reply::ListTables(last)),
            json!({ "tables": ["t"], "next_after": null })
        );
    }

    #[test]
    fn stored_bytes_that_are_not_json_are_an_internal_fault() {
        assert_eq!(get(stored("k", "{", 1)).err(), Some(Refusal::Internal));
        assert_eq!(get(stored("k", "{} {}", 1)).err(), Some(Refusal::Internal));
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
