//! Overflow pages (a value too big for a leaf, as a chain) and free pages (the free list).
//!
//! ```text
//! overflow body: 0 next u64 (0 = last) | 8 len u16 | 10 data[len]
//! free body:     0 next u64 (0 = last)
//! ```

use crate::engine::bytes::{Malformed, Reader, put_u16, put_u64};
use crate::engine::page::{BODY_LEN, HEADER_LEN};

const NEXT_AT: usize = HEADER_LEN;
const LEN_AT: usize = NEXT_AT + 8;
const DATA_AT: usize = LEN_AT + 2;

/// Bytes of a value one overflow page holds.
pub(crate) const OVERFLOW_CAPACITY: usize = BODY_LEN - (DATA_AT - HEADER_LEN);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overflow {
    pub(crate) next: u64,
    pub(crate) data: Vec<u8>,
}

impl Overflow {
    pub(crate) fn encode(&self, image: &mut [u8]) {
        put_u64(image, NEXT_AT, self.next);
        put_u16(image, LEN_AT, self.data.len() as u16);
        image[DATA_AT..DATA_AT + self.data.len()].copy_from_slice(&self.data);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Overflow, usize), Malformed> {
        let mut r = Reader::new(body);
        let next = r.u64()?;
        let len = r.u16()? as usize;
        let data = r.bytes(len)?.to_vec();
        Ok((Overflow { next, data }, DATA_AT - HEADER_LEN + len))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Free {
    pub(crate) next: u64,
}

impl Free {
    pub(crate) fn encode(&self, image: &mut [u8]) {
        put_u64(image, NEXT_AT, self.next);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Free, usize), Malformed> {
        Ok((
            Free {
                next: Reader::new(body).u64()?,
            },
            8,
        ))
    }
}
