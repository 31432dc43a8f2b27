//! The page header and its checksum, which is mixed with the page number.
//!
//! ```text
//! 0        4     5       8           16
//! +--------+-----+-------+-----------+---------- body ----------+
//! | crc32c | type| zero  | page LSN  |                          |
//! +--------+-----+-------+-----------+--------------------------+
//! crc32c = crc32c(page_no as u64 LE ++ page[4..8192])
//! ```
//! In memory and in the WAL a page is an *image*: the same bytes with crc and LSN zeroed, so a
//! logged image never depends on the LSN of the record that carries it.

use crate::engine::bytes::{get_u32, get_u64, put_u32, put_u64};
use crate::engine::error::StorageError;

pub(crate) const PAGE_SIZE: usize = 8192;

pub(crate) const CRC_AT: usize = 0;
const CRC_LEN: usize = 4;
pub(crate) const TYPE_AT: usize = CRC_AT + CRC_LEN;
const TYPE_LEN: usize = 1;
const ZERO_AT: usize = TYPE_AT + TYPE_LEN;
const ZERO_LEN: usize = 3;
pub(crate) const LSN_AT: usize = ZERO_AT + ZERO_LEN;
const LSN_LEN: usize = 8;
pub(crate) const HEADER_LEN: usize = LSN_AT + LSN_LEN;

/// Page kinds; the byte at `TYPE_AT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageType {
    Meta = 1,
    Leaf = 2,
    Interior = 3,
    Overflow = 4,
    Free = 5,
}

impl PageType {
    pub(crate) fn from_byte(b: u8) -> Option<PageType> {
        [
            Self::Meta,
            Self::Leaf,
            Self::Interior,
            Self::Overflow,
            Self::Free,
        ]
        .into_iter()
        .find(|t| *t as u8 == b)
    }
}

fn checksum(page_no: u64, page: &[u8]) -> u32 {
    crc32c::crc32c_append(
        crc32c::crc32c(&page_no.to_le_bytes()),
        &page[CRC_AT + CRC_LEN..],
    )
}

/// The on-disk bytes of an image: LSN stamped, checksum computed.
pub(crate) fn seal(image: &[u8], page_no: u64, lsn: u64) -> Vec<u8> {
    let mut page = image.to_vec();
    seal_in_place(&mut page, page_no, lsn);
    page
}

/// `seal` over a buffer that holds the image: stamps the LSN and the checksum in place.
pub(crate) fn seal_in_place(page: &mut [u8], page_no: u64, lsn: u64) {
    put_u64(page, LSN_AT, lsn);
    let crc = checksum(page_no, page);
    put_u32(page, CRC_AT, crc);
}

/// Checks on-disk bytes and returns the image and the page LSN.
pub(crate) fn unseal(page: &[u8], page_no: u64) -> Result<(Vec<u8>, u64), StorageError> {
    if page.len() != PAGE_SIZE {
        return Err(StorageError::corrupted(Some(page_no), "short page"));
    }
    if get_u32(page, CRC_AT) != checksum(page_no, page) {
        return Err(StorageError::corrupted(
            Some(page_no),
            "page checksum mismatch",
        ));
    }
    let lsn = get_u64(page, LSN_AT);
    let mut image = page.to_vec();
    image[CRC_AT..HEADER_LEN].fill(0);
    image[TYPE_AT] = page[TYPE_AT];
    Ok((image, lsn))
}

/// A fresh image of the given type, all other bytes zero.
pub(crate) fn blank(kind: PageType) -> Vec<u8> {
    let mut image = vec![0u8; PAGE_SIZE];
    image[TYPE_AT] = kind as u8;
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_single_bit_flip_in_a_page_is_detected() {
        let mut image = blank(PageType::Leaf);
        image[100] = 42;
        let page = seal(&image, 7, 99);
        assert_eq!(unseal(&page, 7).unwrap(), (image, 99));
        for bit in 0..PAGE_SIZE * 8 {
            let mut bad = page.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(unseal(&bad, 7).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn a_page_written_to_the_wrong_place_is_detected() {
        let page = seal(&blank(PageType::Free), 3, 1);
        assert!(unseal(&page, 4).is_err());
    }
}
