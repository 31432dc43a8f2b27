//! Document values: inline in the leaf when small, otherwise on a chain of overflow pages.

use crate::engine::error::StorageError;
use crate::engine::page::{Node, OVERFLOW_CAPACITY, Overflow, Value};
use crate::engine::txn::{PageSource, Txn};

/// Largest value kept in the leaf. With 512-byte keys a cell is then at most ~1.6 KiB, so a
/// leaf always holds at least four cells and a split always produces two fitting halves.
pub(crate) const INLINE_MAX: usize = 1024;

pub(crate) fn store(txn: &mut Txn<'_>, bytes: &[u8]) -> Result<Value, StorageError> {
    if bytes.len() <= INLINE_MAX {
        return Ok(Value::Inline(bytes.to_vec()));
    }
    let mut next = 0;
    for chunk in bytes.chunks(OVERFLOW_CAPACITY).rev() {
        let page_no = txn.alloc()?;
        txn.put(
            page_no,
            Node::Overflow(Overflow {
                next,
                data: chunk.to_vec(),
            }),
        );
        next = page_no;
    }
    Ok(Value::Overflow {
        head: next,
        len: bytes.len() as u32,
    })
}

/// The pages of an overflow chain, checked against the length the cell records.
pub(crate) fn chain_pages(
    src: &mut impl PageSource,
    head: u64,
    len: u32,
    mut visit: impl FnMut(u64, &Overflow),
) -> Result<(), StorageError> {
    let pages = (len as usize).div_ceil(OVERFLOW_CAPACITY);
    let mut page_no = head;
    let mut total = 0;
    for i in 0..pages {
        let node = src.node(page_no)?;
        let Node::Overflow(o) = &*node else {
            return Err(StorageError::corrupted(
                Some(page_no),
                "expected an overflow page",
            ));
        };
        let last = i + 1 == pages;
        if (o.next == 0) != last || o.data.is_empty() {
            return Err(StorageError::corrupted(
                Some(page_no),
                "overflow chain has the wrong length",
            ));
        }
        total += o.data.len();
        visit(page_no, o);
        page_no = o.next;
    }
    if total != len as usize {
        return Err(StorageError::corrupted(
            Some(head),
            "overflow chain holds the wrong number of bytes",
        ));
    }
    Ok(())
}

pub(crate) fn load(src: &mut impl PageSource, value: &Value) -> Result<Vec<u8>, StorageError> {
    match value {
        Value::Inline(bytes) => Ok(bytes.clone()),
        Value::Overflow { head, len } => {
            let mut out = Vec::with_capacity(*len as usize);
            chain_pages(src, *head, *len, |_, o| out.extend_from_slice(&o.data))?;
            Ok(out)
        }
    }
}

/// Returns an overflow chain's pages to the free list.
pub(crate) fn release(txn: &mut Txn<'_>, value: &Value) -> Result<(), StorageError> {
    if let Value::Overflow { head, len } = value {
        let mut pages = Vec::new();
        chain_pages(txn, *head, *len, |p, _| pages.push(p))?;
        for page_no in pages {
            txn.free(page_no);
        }
    }
    Ok(())
}
