//! The buffer pool: page images in memory under a page-count bound, loaded and checked on miss.
//!
//! Only clean pages are evicted: a dirty page is written by the next checkpoint, which the
//! engine triggers when dirty pages exceed the bound. So the WAL is always synced past a page's
//! LSN before the page reaches the data file (the checkpoint syncs the WAL first).

use crate::engine::error::StorageError;
use crate::engine::io::{IoFile, read_exact_at};
use crate::engine::page::{Node, PAGE_SIZE, seal_in_place, unseal};
use crate::engine::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(crate) type Image = Arc<Vec<u8>>;

/// A page a transaction changed: its new image and decoded form.
pub(crate) struct Changed {
    pub(crate) page_no: u64,
    pub(crate) image: Image,
    pub(crate) node: Arc<Node>,
}

/// How many resident pages an eviction looks at before picking the least recently used.
const EVICTION_SAMPLE: usize = 8;

pub(crate) struct PageStore {
    file: Arc<dyn IoFile>,
    pool: Mutex<Pool>,
    capacity: usize,
    pub(crate) stats: PoolStats,
}

#[derive(Default)]
pub(crate) struct PoolStats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) corrupt_pages: AtomicU64,
}

#[derive(Default)]
struct Pool {
    frames: HashMap<u64, Frame>,
    /// Resident page numbers, for sampling victims.
    resident: Vec<u64>,
    tick: u64,
    dirty: usize,
}

struct Frame {
    image: Image,
    /// The decoded image, kept so reads do not decode (and allocate) on every access.
    node: Option<Arc<Node>>,
    lsn: u64,
    dirty: bool,
    last_use: u64,
    slot: usize,
}

impl PageStore {
    pub(crate) fn new(file: Arc<dyn IoFile>, pool_bytes: usize) -> PageStore {
        let capacity = (pool_bytes / PAGE_SIZE).max(16);
        PageStore {
            file,
            pool: Mutex::default(),
            capacity,
            stats: PoolStats::default(),
        }
    }

    /// The decoded page, from memory or from disk (checksum and structure checked).
    pub(crate) fn node(&self, page_no: u64) -> Result<(Arc<Node>, u64), StorageError> {
        let mut pool = lock(&self.pool);
        pool.tick += 1;
        let tick = pool.tick;
        if let Some(frame) = pool.frames.get_mut(&page_no) {
            frame.last_use = tick;
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            if let Some(node) = &frame.node {
                return Ok((node.clone(), frame.lsn));
            }
            let (image, lsn) = (frame.image.clone(), frame.lsn);
            drop(pool);
            let node = Arc::new(Node::decode(&image, page_no)?);
            self.remember(page_no, &image, &node);
            return Ok((node, lsn));
        }
        drop(pool);
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let (image, lsn) = self.read_from_disk(page_no)?;
        let node = Arc::new(Node::decode(&image, page_no)?);
        let mut pool = lock(&self.pool);
        if !pool.frames.contains_key(&page_no) {
            self.make_room(&mut pool);
            pool.insert(page_no, Arc::new(image), Some(node.clone()), lsn, false);
        }
        Ok((node, lsn))
    }

    /// Keeps a decoded node with its image, unless the page changed meanwhile.
    fn remember(&self, page_no: u64, image: &Image, node: &Arc<Node>) {
        let mut pool = lock(&self.pool);
        if let Some(frame) = pool
            .frames
            .get_mut(&page_no)
            .filter(|f| Arc::ptr_eq(&f.image, image))
        {
            frame.node = Some(node.clone());
        }
    }

    /// Reads and checks a page from the data file, bypassing the pool.
    pub(crate) fn read_from_disk(&self, page_no: u64) -> Result<(Vec<u8>, u64), StorageError> {
        read_page(&*self.file, page_no).inspect_err(|e| {
            if matches!(e, StorageError::Corrupted { .. }) {
                self.stats.corrupt_pages.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    /// The image a change must be diffed against, if the page is dirty (changed since the
    /// last checkpoint); `None` means the change must be logged as a full page image.
    pub(crate) fn diff_base(&self, page_no: u64) -> Option<Image> {
        let pool = lock(&self.pool);
        pool.frames
            .get(&page_no)
            .filter(|f| f.dirty)
            .map(|f| f.image.clone())
    }

    /// The resident image and whether it is dirty.
    pub(crate) fn peek(&self, page_no: u64) -> Option<(Image, bool)> {
        let pool = lock(&self.pool);
        pool.frames
            .get(&page_no)
            .map(|f| (f.image.clone(), f.dirty))
    }

    /// Installs pages recovery rebuilt from the log, as dirty pages with the LSN of the record
    /// that last changed each (so the next checkpoint writes them).
    pub(crate) fn install_replayed(&self, pages: Vec<(u64, Vec<u8>, u64)>) {
        let mut pool = lock(&self.pool);
        for (page_no, image, lsn) in pages {
            pool.insert(page_no, Arc::new(image), None, lsn, true);
        }
    }

    /// Installs committed pages (already logged at `lsn`) as dirty.
    pub(crate) fn install(&self, pages: Vec<Changed>, lsn: u64) {
        let mut pool = lock(&self.pool);
        for page in pages {
            pool.insert(page.page_no, page.image, Some(page.node), lsn, true);
        }
    }

    pub(crate) fn over_budget(&self) -> bool {
        self.over_budget_by(1)
    }

    /// Whether dirty pages exceed `times` the pool bound (checkpoints were held off).
    pub(crate) fn over_budget_by(&self, times: usize) -> bool {
        lock(&self.pool).dirty > self.capacity.saturating_mul(times)
    }

    /// The images of the dirty pages, as they are now: images are replaced whole, never
    /// changed in place, so these stay as they were however the pages change later.
    pub(crate) fn dirty_images(&self) -> HashMap<u64, Image> {
        let pool = lock(&self.pool);
        let dirty = pool.frames.iter().filter(|(_, f)| f.dirty);
        dirty.map(|(&p, f)| (p, f.image.clone())).collect()
    }

    pub(crate) fn dirty_pages(&self) -> Vec<(u64, Image, u64)> {
        let pool = lock(&self.pool);
        let dirty = pool.frames.iter().filter(|(_, f)| f.dirty);
        let mut out: Vec<_> = dirty.map(|(&p, f)| (p, f.image.clone(), f.lsn)).collect();
        out.sort_unstable_by_key(|(p, _, _)| *p);
        out
    }

    /// Writes a page to the data file. The caller has synced the WAL past `lsn`.
    /// Writes pages (sorted by page number) to the data file. The caller has synced the WAL
    /// past each page's LSN.
    pub(crate) fn write_pages<'a>(
        &self,
        pages: impl IntoIterator<Item = (u64, &'a [u8], u64)>,
    ) -> Result<(), StorageError> {
        write_sealed_runs(&*self.file, pages)
    }

    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        Ok(self.file.sync_data()?)
    }

    /// After a checkpoint wrote them: the pages are clean, and the pool shrinks to its bound.
    pub(crate) fn mark_clean(&self, pages: &[(u64, Image, u64)]) {
        let mut pool = lock(&self.pool);
        for (page_no, _, _) in pages {
            if let Some(frame) = pool.frames.get_mut(page_no).filter(|f| f.dirty) {
                frame.dirty = false;
                pool.dirty -= 1;
            }
        }
        while pool.frames.len() > self.capacity && pool.evict_one() {}
    }

    fn make_room(&self, pool: &mut Pool) {
        if pool.frames.len() >= self.capacity {
            pool.evict_one();
        }
    }
}

/// Pages written with one call at most (1 MiB).
const WRITE_RUN_PAGES: usize = 128;

/// Writes page images (sorted by page number, each with its LSN) to a data file, sealed, with
/// one write per run of consecutive pages (at most 1 MiB), not one per page.
pub(crate) fn write_sealed_runs<'a>(
    file: &dyn IoFile,
    pages: impl IntoIterator<Item = (u64, &'a [u8], u64)>,
) -> Result<(), StorageError> {
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_RUN_PAGES * PAGE_SIZE);
    let mut first = 0u64;
    for (page_no, image, lsn) in pages {
        let pending = (buf.len() / PAGE_SIZE) as u64;
        if pending > 0 && (page_no != first + pending || pending as usize == WRITE_RUN_PAGES) {
            file.write_at(first * PAGE_SIZE as u64, &buf)?;
            buf.clear();
        }
        if buf.is_empty() {
            first = page_no;
        }
        let at = buf.len();
        buf.extend_from_slice(image);
        seal_in_place(&mut buf[at..], page_no, lsn);
    }
    if !buf.is_empty() {
        file.write_at(first * PAGE_SIZE as u64, &buf)?;
    }
    Ok(())
}

/// Reads and checks one page of a data file.
pub(crate) fn read_page(file: &dyn IoFile, page_no: u64) -> Result<(Vec<u8>, u64), StorageError> {
    let mut buf = vec![0u8; PAGE_SIZE];
    if !read_exact_at(file, page_no * PAGE_SIZE as u64, &mut buf)? {
        return Err(StorageError::corrupted(
            Some(page_no),
            "page lies beyond the end of the data file",
        ));
    }
    unseal(&buf, page_no)
}

impl Pool {
    fn insert(
        &mut self,
        page_no: u64,
        image: Image,
        node: Option<Arc<Node>>,
        lsn: u64,
        dirty: bool,
    ) {
        self.tick += 1;
        let last_use = self.tick;
        if let Some(frame) = self.frames.get_mut(&page_no) {
            self.dirty += usize::from(dirty && !frame.dirty);
            self.dirty -= usize::from(!dirty && frame.dirty);
            *frame = Frame {
                image,
                node,
                lsn,
                dirty,
                last_use,
                slot: frame.slot,
            };
            return;
        }
        let slot = self.resident.len();
        self.resident.push(page_no);
        self.dirty += usize::from(dirty);
        self.frames.insert(
            page_no,
            Frame {
                image,
                node,
                lsn,
                dirty,
                last_use,
                slot,
            },
        );
    }

    /// Evicts the least recently used clean page among a sample; false if none is clean.
    fn evict_one(&mut self) -> bool {
        let victim = self.sample_victim().or_else(|| self.any_clean());
        let Some(page_no) = victim else { return false };
        if let Some(frame) = self.frames.remove(&page_no) {
            self.resident.swap_remove(frame.slot);
            if let Some(moved) = self.resident.get(frame.slot).copied()
                && let Some(f) = self.frames.get_mut(&moved)
            {
                f.slot = frame.slot;
            }
        }
        true
    }

    fn sample_victim(&self) -> Option<u64> {
        let n = self.resident.len();
        if n == 0 {
            return None;
        }
        let picks =
            (0..EVICTION_SAMPLE).map(|i| self.resident[(self.tick as usize + i * 7919) % n]);
        let clean = picks.filter_map(|p| {
            self.frames
                .get(&p)
                .filter(|f| !f.dirty)
                .map(|f| (f.last_use, p))
        });
        clean.min().map(|(_, p)| p)
    }

    fn any_clean(&self) -> Option<u64> {
        self.frames.iter().find(|(_, f)| !f.dirty).map(|(&p, _)| p)
    }
}
