//! Views of the pages: a read view for readers, and a write transaction that keeps its changes
//! private until commit (so a failed batch changes nothing).

use crate::engine::buffer::{Image, PageStore};
use crate::engine::error::StorageError;
use crate::engine::page::{Free, Meta, Node};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const META_PAGE: u64 = 0;

/// Something the tree can read decoded pages from.
pub(crate) trait PageSource {
    fn node(&mut self, page_no: u64) -> Result<Node, StorageError>;
    fn meta(&mut self) -> Result<Meta, StorageError>;
}

fn load(store: &PageStore, page_no: u64) -> Result<(Node, u64), StorageError> {
    let cached = store.get(page_no)?;
    Ok((Node::decode(&cached.image, page_no)?, cached.lsn))
}

fn as_meta(node: Node) -> Result<Meta, StorageError> {
    match node {
        Node::Meta(meta) => Ok(meta),
        _ => Err(StorageError::corrupted(
            Some(META_PAGE),
            "page 0 is not the meta page",
        )),
    }
}

/// A reader's view; remembers the newest page LSN it saw so the reader can wait for it to be
/// durable (a commit is visible in memory before its fsync finishes).
pub(crate) struct ReadView<'a> {
    store: &'a PageStore,
    pub(crate) max_lsn: u64,
}

impl<'a> ReadView<'a> {
    pub(crate) fn new(store: &'a PageStore) -> Self {
        ReadView { store, max_lsn: 0 }
    }
}

impl PageSource for ReadView<'_> {
    fn node(&mut self, page_no: u64) -> Result<Node, StorageError> {
        let (node, lsn) = load(self.store, page_no)?;
        self.max_lsn = self.max_lsn.max(lsn);
        Ok(node)
    }

    fn meta(&mut self) -> Result<Meta, StorageError> {
        let node = self.node(META_PAGE)?;
        as_meta(node)
    }
}

/// A write transaction: changed pages live in `overlay` until commit.
pub(crate) struct Txn<'a> {
    store: &'a PageStore,
    overlay: BTreeMap<u64, Node>,
    pub(crate) meta: Meta,
    /// The LSN this transaction's record will have: the version of everything it writes.
    pub(crate) lsn: u64,
}

impl<'a> Txn<'a> {
    pub(crate) fn begin(store: &'a PageStore, lsn: u64) -> Result<Self, StorageError> {
        let meta = as_meta(load(store, META_PAGE)?.0)?;
        Ok(Txn {
            store,
            overlay: BTreeMap::new(),
            meta,
            lsn,
        })
    }

    pub(crate) fn put(&mut self, page_no: u64, node: Node) {
        self.overlay.insert(page_no, node);
    }

    /// A page for new contents: the head of the free list, or a new page at the end.
    pub(crate) fn alloc(&mut self) -> Result<u64, StorageError> {
        if self.meta.free_head == 0 {
            self.meta.page_count += 1;
            return Ok(self.meta.page_count - 1);
        }
        let page_no = self.meta.free_head;
        match self.node(page_no)? {
            Node::Free(free) => self.meta.free_head = free.next,
            _ => {
                return Err(StorageError::corrupted(
                    Some(page_no),
                    "free list points at a used page",
                ));
            }
        }
        Ok(page_no)
    }

    pub(crate) fn free(&mut self, page_no: u64) {
        self.put(
            page_no,
            Node::Free(Free {
                next: self.meta.free_head,
            }),
        );
        self.meta.free_head = page_no;
    }

    /// The images of every page this transaction changed, meta page included.
    pub(crate) fn finish(mut self) -> Vec<(u64, Image)> {
        self.overlay
            .insert(META_PAGE, Node::Meta(self.meta.clone()));
        self.overlay
            .iter()
            .map(|(&p, node)| (p, Arc::new(node.encode())))
            .collect()
    }
}

impl PageSource for Txn<'_> {
    fn node(&mut self, page_no: u64) -> Result<Node, StorageError> {
        match self.overlay.get(&page_no) {
            Some(node) => Ok(node.clone()),
            None => Ok(load(self.store, page_no)?.0),
        }
    }

    fn meta(&mut self) -> Result<Meta, StorageError> {
        Ok(self.meta.clone())
    }
}
