//! Leaf pages: sorted cells of (key, version, value), the value inline or on an overflow chain.
//!
//! ```text
//! body: 0 count u16 | cells...
//! cell: key_len u16 | key | version u64 | kind u8 | len u32 | kind 0: value[len]
//!                                                           | kind 1: overflow head u64
//! ```

use crate::engine::bytes::{Malformed, Reader};
use std::sync::Arc;

const INLINE: u8 = 0;
const OVERFLOW: u8 = 1;
const COUNT_LEN: usize = 2;
const CELL_FIXED: usize = 2 + 8 + 1 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Inline(Vec<u8>),
    Overflow { head: u64, len: u32 },
}

/// Copies `bytes` to the front of `out` and moves `out` past them. The caller has checked
/// that the node fits its page (`encoded_len`).
fn put(out: &mut &mut [u8], bytes: &[u8]) {
    let (head, rest) = std::mem::take(out).split_at_mut(bytes.len());
    head.copy_from_slice(bytes);
    *out = rest;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) key: Vec<u8>,
    pub(crate) version: u64,
    pub(crate) value: Value,
}

impl Cell {
    pub(crate) fn encoded_len(&self) -> usize {
        let value = match &self.value {
            Value::Inline(v) => v.len(),
            Value::Overflow { .. } => 8,
        };
        CELL_FIXED + self.key.len() + value
    }

    fn encode(&self, out: &mut &mut [u8]) {
        put(out, &(self.key.len() as u16).to_le_bytes());
        put(out, &self.key);
        put(out, &self.version.to_le_bytes());
        match &self.value {
            Value::Inline(v) => {
                put(out, &[INLINE]);
                put(out, &(v.len() as u32).to_le_bytes());
                put(out, v);
            }
            Value::Overflow { head, len } => {
                put(out, &[OVERFLOW]);
                put(out, &len.to_le_bytes());
                put(out, &head.to_le_bytes());
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Cell, Malformed> {
        let key_len = r.u16()? as usize;
        let key = r.bytes(key_len)?.to_vec();
        let version = r.u64()?;
        let kind = r.u8()?;
        let len = r.u32()?;
        let value = match kind {
            INLINE => Value::Inline(r.bytes(len as usize)?.to_vec()),
            OVERFLOW => Value::Overflow {
                head: r.u64()?,
                len,
            },
            _ => return Err(Malformed("unknown value kind in leaf cell".into())),
        };
        Ok(Cell {
            key,
            version,
            value,
        })
    }
}

/// Cells are shared between versions of a leaf: a writer's copy of a leaf copies pointers,
/// not keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub(crate) cells: Vec<Arc<Cell>>,
}

impl Leaf {
    pub(crate) fn encoded_len(&self) -> usize {
        COUNT_LEN + self.cells.iter().map(|c| c.encoded_len()).sum::<usize>()
    }

    pub(crate) fn encode(&self, image: &mut [u8]) {
        let mut out = &mut image[super::HEADER_LEN..];
        put(&mut out, &(self.cells.len() as u16).to_le_bytes());
        for cell in &self.cells {
            cell.encode(&mut out);
        }
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Leaf, usize), Malformed> {
        let mut r = Reader::new(body);
        let count = r.u16()?;
        let cells = (0..count)
            .map(|_| Cell::decode(&mut r).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        let leaf = Leaf { cells };
        let used = leaf.encoded_len();
        Ok((leaf, used))
    }

    /// Index of `key`, or where it would go.
    pub(crate) fn search(&self, key: &[u8]) -> Result<usize, usize> {
        self.cells.binary_search_by(|c| c.key.as_slice().cmp(key))
    }
}
