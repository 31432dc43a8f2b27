//! Redo: apply page images and diffs in LSN order into memory, then write the pages once.
//!
//! Changes are applied in place from the record's bytes (no copy of images or runs, no clone of
//! a page per diff), and the pages are written in runs of consecutive page numbers, each run
//! sealed in one buffer and written with one call.

use crate::engine::buffer::read_page;
use crate::engine::error::StorageError;
use crate::engine::io::IoFile;
use crate::engine::page::{PAGE_SIZE, seal_in_place};
use crate::engine::redo::{self, ChangeRef, PayloadView};
use std::collections::BTreeMap;

/// Pages written with one call at most (1 MiB).
const WRITE_PAGES: usize = 128;

pub(crate) struct Replay<'a> {
    data: &'a dyn IoFile,
    /// Page images as of the last applied record, with that record's LSN.
    pages: BTreeMap<u64, (Box<[u8]>, u64)>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(data: &'a dyn IoFile) -> Self {
        Replay {
            data,
            pages: BTreeMap::new(),
        }
    }

    pub(crate) fn apply(
        &mut self,
        lsn: u64,
        payload: &PayloadView<'_>,
    ) -> Result<(), StorageError> {
        for &(page_no, change) in &payload.pages {
            let slot = match self.pages.entry(page_no) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    // A diff's base is normally the image replay built; the data file only if
                    // no image came first.
                    let base = match change {
                        ChangeRef::Image(_) => vec![0u8; PAGE_SIZE],
                        ChangeRef::Diff { .. } => read_page(self.data, page_no)?.0,
                    };
                    e.insert((base.into_boxed_slice(), 0))
                }
            };
            redo::apply_in_place(change, &mut slot.0)
                .map_err(|m| StorageError::corrupted(Some(page_no), m.0))?;
            slot.1 = lsn;
        }
        Ok(())
    }

    /// Writes every replayed page and syncs the data file; returns how many.
    pub(crate) fn write_all(self) -> Result<usize, StorageError> {
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_PAGES * PAGE_SIZE);
        let mut first = 0u64;
        for (&page_no, (image, lsn)) in &self.pages {
            let pending = (buf.len() / PAGE_SIZE) as u64;
            if pending > 0 && (page_no != first + pending || pending as usize == WRITE_PAGES) {
                self.data.write_at(first * PAGE_SIZE as u64, &buf)?;
                buf.clear();
            }
            if buf.is_empty() {
                first = page_no;
            }
            let at = buf.len();
            buf.extend_from_slice(image);
            seal_in_place(&mut buf[at..], page_no, *lsn);
        }
        if !buf.is_empty() {
            self.data.write_at(first * PAGE_SIZE as u64, &buf)?;
        }
        if !self.pages.is_empty() {
            self.data.sync_data()?;
        }
        Ok(self.pages.len())
    }
}
