//! Entry points for the fuzz targets in `fuzz/`: the gateway's parsers of network input, each
//! checked against a property, not only for panics. Not a stable API.

use photondb_proto::names::TableRef;
use serde_json::Value;

use crate::draft::{Draft, PayloadLimits};
use crate::grpc::{self, GrpcMethod};
use crate::operation::{BatchOp, Operation, Precondition};
use crate::{json, rest, route};

const LIMITS: PayloadLimits = PayloadLimits {
    max_json_depth: 32,
    max_batch_operations: photondb_proto::limits::MAX_BATCH_OPERATIONS,
    max_scan_limit: photondb_proto::limits::MAX_SCAN_LIMIT as u32,
};

/// The depth scan runs before any parser: on every input serde accepts, it must report at
/// least the nesting serde sees (exactly it when the keys are unique: with a duplicate key
/// serde keeps only the last value, so the text may nest deeper than the parsed value), or a
/// deep document could slip past the limit (or a legal one be refused).
pub fn json_depth(raw: &[u8]) {
    let scanned = json::depth(raw);
    if let Ok(value) = serde_json::from_slice::<Value>(raw) {
        assert!(
            scanned >= nesting(&value),
            "depth scan {scanned} is below the parser's {}",
            nesting(&value)
        );
        if json::document(bytes::Bytes::copy_from_slice(raw), usize::MAX).is_ok() {
            assert_eq!(
                scanned,
                nesting(&value),
                "depth scan disagrees with the parser"
            );
        }
    }
    if let Ok(doc) = json::document(bytes::Bytes::copy_from_slice(raw), LIMITS.max_json_depth) {
        assert!(nesting(&serde_json::from_slice(doc.bytes()).unwrap()) <= LIMITS.max_json_depth);
    }
}

fn nesting(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(nesting).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// A REST batch body: refused, or operations whose keys and documents each passed.
pub fn rest_batch(raw: &[u8]) {
    let table = TableRef::parse("d", "t").expect("valid names");
    if let Ok(Operation::Batch { ops, .. }) = rest::batch(table, raw, &LIMITS) {
        assert!(!ops.is_empty() && ops.len() <= LIMITS.max_batch_operations);
        for op in ops {
            if let BatchOp::Put { value, .. } = op {
                let v: Value = serde_json::from_slice(value.bytes()).expect("checked document");
                assert!(v.is_object());
            }
        }
    }
}

/// A gRPC request body for every method: unframing accepts exactly one uncompressed message
/// whose length matches, and decoding never panics.
pub fn grpc_body(raw: &[u8]) {
    if let Ok(msg) = grpc::unframe(raw) {
        assert_eq!(raw.len(), msg.len() + 5);
        assert_eq!(raw[0], 0);
    }
    for method in METHODS {
        if let Ok(Draft::GrpcBatch { table, ops }) = method.decode(raw) {
            let _ = grpc::batch_ops(table, ops, &LIMITS);
        }
    }
}

const METHODS: [GrpcMethod; 11] = [
    GrpcMethod::ListDatabases,
    GrpcMethod::CreateDatabase,
    GrpcMethod::DropDatabase,
    GrpcMethod::ListTables,
    GrpcMethod::CreateTable,
    GrpcMethod::DropTable,
    GrpcMethod::Get,
    GrpcMethod::Put,
    GrpcMethod::Delete,
    GrpcMethod::Scan,
    GrpcMethod::Batch,
];

/// `If-Match` / `If-None-Match` (the input split at its first NUL): a version precondition
/// names exactly the digits sent, and `If-None-Match` means only `*`.
pub fn preconditions(raw: &[u8]) {
    let Ok(text) = std::str::from_utf8(raw) else {
        return;
    };
    let (if_match, if_none_match) = match text.split_once('\0') {
        Some((a, b)) => (Some(a).filter(|a| !a.is_empty()), Some(b)),
        None => (Some(text), None),
    };
    match route::precondition(if_match, if_none_match) {
        Ok(Some(Precondition::IfVersion(v))) => {
            let sent = if_match.expect("a version comes from If-Match");
            assert!(sent.contains(&v.to_string()), "{sent:?} -> {v}");
            assert!(if_none_match.is_none());
        }
        Ok(Some(Precondition::IfAbsent)) => assert_eq!(if_none_match, Some("*")),
        Ok(None) => assert!(if_match.is_none() && if_none_match.is_none()),
        Err(_) => {}
    }
}
