//! Pipeline step 10: the payload of a [`Draft`] is checked (documents, batches, scan limits)
//! and the typed [`Operation`] to forward comes out.

use crate::draft::{Draft, PayloadError, PayloadLimits};
use crate::json;
use crate::operation::Operation;
use crate::{grpc, rest};

/// Checks the payload and yields the operation to forward.
pub fn check(draft: Draft, limits: &PayloadLimits) -> Result<Operation, PayloadError> {
    match draft {
        Draft::Ready(op) => Ok(cap_scan(op, limits.max_scan_limit)),
        Draft::Put {
            table,
            key,
            precondition,
            value,
        } => Ok(Operation::Put {
            table,
            key,
            value: json::document(value, limits.max_json_depth)?,
            precondition,
        }),
        Draft::RestBatch { table, body } => rest::batch(table, &body, limits),
        Draft::GrpcBatch { table, ops } => grpc::batch_ops(table, ops, limits),
    }
}

/// A scan asks for at most the configured page size; 0 means that size.
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

#[cfg(test)]
mod tests {
    use super::*;
    use photondb_proto::names::TableRef;

    const LIMITS: PayloadLimits = PayloadLimits {
        max_json_depth: 8,
        max_batch_operations: 2,
        max_scan_limit: 100,
    };

    fn scan(limit: u32) -> u32 {
        let table = TableRef::parse("d", "t").unwrap();
        let op = Operation::Scan {
            table,
            prefix: String::new(),
            after: String::new(),
            limit,
        };
        match check(Draft::Ready(op), &LIMITS) {
            Ok(Operation::Scan { limit, .. }) => limit,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scan_limit_is_capped() {
        assert_eq!(scan(0), 100);
        assert_eq!(scan(7), 7);
        assert_eq!(scan(5_000), 100);
    }
}
