//! Redo: apply page images and diffs in LSN order into memory, then write the pages once.

use crate::engine::buffer::read_page;
use crate::engine::error::StorageError;
use crate::engine::io::IoFile;
use crate::engine::page::{PAGE_SIZE, seal};
use crate::engine::redo::{self, Change, Payload};
use std::collections::BTreeMap;

pub(crate) struct Replay<'a> {
    data: &'a dyn IoFile,
    /// Page images as of the last applied record, with that record's LSN.
    pages: BTreeMap<u64, (Vec<u8>, u64)>,
}

impl<'a> Replay<'a> {
    pub(crate) fn new(data: &'a dyn IoFile) -> Self {
        Replay {
            data,
            pages: BTreeMap::new(),
        }
    }

    pub(crate) fn apply(&mut self, lsn: u64, payload: &Payload) -> Result<(), StorageError> {
        for change in &payload.pages {
            let page_no = change.page_no;
            let base = match &change.change {
                Change::Diff(_) => Some(self.base(page_no)?),
                Change::Image(_) => None,
            };
            let image = redo::apply(&change.change, base.as_deref())
                .map_err(|m| StorageError::corrupted(Some(page_no), m.0))?;
            self.pages.insert(page_no, (image, lsn));
        }
        Ok(())
    }

    /// A diff's base: normally the image replay built; the data file only if no image came first.
    fn base(&self, page_no: u64) -> Result<Vec<u8>, StorageError> {
        match self.pages.get(&page_no) {
            Some((image, _)) => Ok(image.clone()),
            None => Ok(read_page(self.data, page_no)?.0),
        }
    }

    /// Writes every replayed page and syncs the data file; returns how many.
    pub(crate) fn write_all(self) -> Result<usize, StorageError> {
        for (page_no, (image, lsn)) in &self.pages {
            self.data
                .write_at(page_no * PAGE_SIZE as u64, &seal(image, *page_no, *lsn))?;
        }
        if !self.pages.is_empty() {
            self.data.sync_data()?;
        }
        Ok(self.pages.len())
    }
}
