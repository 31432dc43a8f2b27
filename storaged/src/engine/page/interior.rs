//! Interior pages: separator keys and child pointers.
//!
//! Child `i` holds keys `k` with `keys[i-1] <= k < keys[i]` (missing bounds are open).
//!
//! ```text
//! body: 0 count u16 | 2 child0 u64 | entries: key_len u16 | key | child u64
//! ```

use crate::engine::bytes::{Malformed, Reader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interior {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) children: Vec<u64>,
}

impl Interior {
    /// The count and the first child.
    pub(crate) const EMPTY_LEN: usize = 2 + 8;

    /// One separator with the child after it.
    pub(crate) fn entry_len(key: &[u8]) -> usize {
        2 + key.len() + 8
    }

    pub(crate) fn encoded_len(&self) -> usize {
        Self::EMPTY_LEN + self.keys.iter().map(|k| Self::entry_len(k)).sum::<usize>()
    }

    pub(crate) fn encode(&self, image: &mut [u8]) {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(&(self.keys.len() as u16).to_le_bytes());
        let first = self.children.first().copied().unwrap_or(0);
        out.extend_from_slice(&first.to_le_bytes());
        for (key, child) in self.keys.iter().zip(self.children.iter().skip(1)) {
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&child.to_le_bytes());
        }
        let at = super::HEADER_LEN;
        image[at..at + out.len()].copy_from_slice(&out);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Interior, usize), Malformed> {
        let mut r = Reader::new(body);
        let count = r.u16()?;
        let mut node = Interior {
            keys: Vec::new(),
            children: vec![r.u64()?],
        };
        for _ in 0..count {
            let len = r.u16()? as usize;
            node.keys.push(r.bytes(len)?.to_vec());
            node.children.push(r.u64()?);
        }
        let used = node.encoded_len();
        Ok((node, used))
    }

    /// The child that may hold `key`.
    pub(crate) fn child_index(&self, key: &[u8]) -> usize {
        self.keys.partition_point(|sep| sep.as_slice() <= key)
    }
}
