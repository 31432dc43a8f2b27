//! Redo: apply page images and diffs in LSN order into memory, then write the pages once.
//!
//! Changes are applied in place from the record's bytes (no copy of images or runs, no clone of
//! a page per diff), and the pages are written in runs of consecutive page numbers, each run
//! sealed in one buffer and written with one call.

use crate::engine::buffer::{read_page, write_sealed_runs};
use crate::engine::error::StorageError;
use crate::engine::io::IoFile;
use crate::engine::page::PAGE_SIZE;
use crate::engine::redo::{self, ChangeRef, PayloadView};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) struct Replay {
    data: Arc<dyn IoFile>,
    /// Page images as of the last applied record, with that record's LSN.
    pages: BTreeMap<u64, (Box<[u8]>, u64)>,
}

impl Replay {
    pub(crate) fn new(data: Arc<dyn IoFile>) -> Self {
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
                        ChangeRef::Diff { .. } => read_page(&*self.data, page_no)?.0,
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

    /// How many pages replay rebuilt.
    pub(crate) fn len(&self) -> usize {
        self.pages.len()
    }

    /// The rebuilt pages as (page number, image, LSN of the last record that changed it), for
    /// the buffer pool to hold as dirty pages until the next checkpoint writes them.
    pub(crate) fn into_pages(self) -> Vec<(u64, Vec<u8>, u64)> {
        let page = |(page_no, (image, lsn)): (u64, (Box<[u8]>, u64))| (page_no, image.into(), lsn);
        self.pages.into_iter().map(page).collect()
    }

    /// The rebuilt images, for an offline verify to read over the data file.
    pub(crate) fn images(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.pages.iter().map(|(&p, (image, _))| (p, &image[..]))
    }

    /// Writes every replayed page and syncs the data file; returns how many.
    pub(crate) fn write_all(self) -> Result<usize, StorageError> {
        let pages = self
            .pages
            .iter()
            .map(|(&p, (image, lsn))| (p, &image[..], *lsn));
        write_sealed_runs(&*self.data, pages)?;
        if !self.pages.is_empty() {
            self.data.sync_data()?;
        }
        Ok(self.pages.len())
    }
}
