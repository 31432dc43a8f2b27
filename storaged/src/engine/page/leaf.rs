//! Leaf pages: sorted cells of (key, version, value), the value inline or on an overflow chain.
//!
//! ```text
//! body: 0 count u16 | cells...
//! cell: key_len u16 | key | version u64 | kind u8 | len u32 | kind 0: value[len]
//!                                                           | kind 1: overflow head u64
//! ```

use crate::engine::bytes::{Malformed, Reader};

const INLINE: u8 = 0;
const OVERFLOW: u8 = 1;
const COUNT_LEN: usize = 2;
const CELL_FIXED: usize = 2 + 8 + 1 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Inline(Vec<u8>),
    Overflow { head: u64, len: u32 },
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

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.version.to_le_bytes());
        match &self.value {
            Value::Inline(v) => {
                out.push(INLINE);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            Value::Overflow { head, len } => {
                out.push(OVERFLOW);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&head.to_le_bytes());
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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Leaf {
    pub(crate) cells: Vec<Cell>,
}

impl Leaf {
    pub(crate) fn encoded_len(&self) -> usize {
        COUNT_LEN + self.cells.iter().map(Cell::encoded_len).sum::<usize>()
    }

    pub(crate) fn encode(&self, image: &mut [u8]) {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&(self.cells.len() as u16).to_le_bytes());
        for cell in &self.cells {
            cell.encode(&mut out);
        }
        let at = super::HEADER_LEN;
        image[at..at + out.len()].copy_from_slice(&out);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Leaf, usize), Malformed> {
        let mut r = Reader::new(body);
        let count = r.u16()?;
        let cells = (0..count)
            .map(|_| Cell::decode(&mut r))
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
