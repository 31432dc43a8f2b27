//! The meta page (page 0): tree root, free-list head, page count, next table id.
//!
//! ```text
//! body offset 0     8        12             16           24          32      40
//!             +-----+--------+--------------+------------+-----------+-------+
//!             |magic| format | next_table_id| page_count | free_head | root  |
//!             +-----+--------+--------------+------------+-----------+-------+
//! ```

use crate::engine::bytes::{Malformed, Reader, put_u32, put_u64};
use crate::engine::page::HEADER_LEN;

const MAGIC: u64 = u64::from_le_bytes(*b"PHOTONPG");
const FORMAT: u32 = 1;

const MAGIC_AT: usize = HEADER_LEN;
const FORMAT_AT: usize = MAGIC_AT + 8;
const NEXT_TABLE_AT: usize = FORMAT_AT + 4;
const PAGE_COUNT_AT: usize = NEXT_TABLE_AT + 4;
const FREE_HEAD_AT: usize = PAGE_COUNT_AT + 8;
const ROOT_AT: usize = FREE_HEAD_AT + 8;
const END: usize = ROOT_AT + 8;

/// Page 0. `free_head == 0` means the free list is empty (page 0 is never free).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) page_count: u64,
    pub(crate) free_head: u64,
    pub(crate) root: u64,
    pub(crate) next_table_id: u32,
}

impl Meta {
    pub(crate) fn encode(&self, image: &mut [u8]) {
        put_u64(image, MAGIC_AT, MAGIC);
        put_u32(image, FORMAT_AT, FORMAT);
        put_u32(image, NEXT_TABLE_AT, self.next_table_id);
        put_u64(image, PAGE_COUNT_AT, self.page_count);
        put_u64(image, FREE_HEAD_AT, self.free_head);
        put_u64(image, ROOT_AT, self.root);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<(Meta, usize), Malformed> {
        let mut r = Reader::new(body);
        if r.u64()? != MAGIC || r.u32()? != FORMAT {
            return Err(Malformed("meta page has a bad magic or format".into()));
        }
        let next_table_id = r.u32()?;
        let meta = Meta {
            page_count: r.u64()?,
            free_head: r.u64()?,
            root: r.u64()?,
            next_table_id,
        };
        let bad =
            meta.root == 0 || meta.root >= meta.page_count || meta.free_head >= meta.page_count;
        if bad {
            return Err(Malformed("meta page points outside the file".into()));
        }
        Ok((meta, END - HEADER_LEN))
    }
}
