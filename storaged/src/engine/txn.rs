//! Views of the pages: a read view for readers, and a write transaction that keeps its changes
//! private until commit (so a failed batch changes nothing).

use crate::engine::buffer::{Changed, PageStore};
use crate::engine::error::StorageError;
use crate::engine::page::{Free, Meta, Node};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) const META_PAGE: u64 = 0;

/// Something the tree can read decoded pages from. Nodes are shared; a writer clones the ones
/// it changes (`Arc::unwrap_or_clone`).
pub(crate) trait PageSource {
    fn node(&mut self, page_no: u64) -> Result<Arc<Node>, StorageError>;
    fn meta(&mut self) -> Result<Meta, StorageError>;
}

fn as_meta(node: &Node) -> Result<Meta, StorageError> {
    match node {
        Node::Meta(meta) => Ok(meta.clone()),
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
    fn node(&mut self, page_no: u64) -> Result<Arc<Node>, StorageError> {
        let (node, lsn) = self.store.node(page_no)?;
        self.max_lsn = self.max_lsn.max(lsn);
        Ok(node)
    }

    fn meta(&mut self) -> Result<Meta, StorageError> {
        let node = self.node(META_PAGE)?;
        as_meta(&node)
    }
}

/// A write transaction: changed pages live in `overlay` until commit.
pub(crate) struct Txn<'a> {
    store: &'a PageStore,
    overlay: BTreeMap<u64, Arc<Node>>,
    pub(crate) meta: Meta,
    /// The meta page as the transaction found it: unchanged, it is not rewritten.
    begin_meta: Meta,
    /// The LSN this transaction's record will have: the version of everything it writes.
    pub(crate) lsn: u64,
}

impl<'a> Txn<'a> {
    pub(crate) fn begin(store: &'a PageStore, lsn: u64) -> Result<Self, StorageError> {
        let meta = as_meta(&store.node(META_PAGE)?.0)?;
        Ok(Txn {
            store,
            overlay: BTreeMap::new(),
            begin_meta: meta.clone(),
            meta,
            lsn,
        })
    }

    pub(crate) fn put(&mut self, page_no: u64, node: Node) {
        self.overlay.insert(page_no, Arc::new(node));
    }

    /// A page for new contents: the head of the free list, or a new page at the end.
    pub(crate) fn alloc(&mut self) -> Result<u64, StorageError> {
        if self.meta.free_head == 0 {
            self.meta.page_count += 1;
            return Ok(self.meta.page_count - 1);
        }
        let page_no = self.meta.free_head;
        match &*self.node(page_no)? {
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

    /// Every page this transaction wrote (the meta page if it changed), encoded.
    pub(crate) fn finish(mut self) -> Vec<Changed> {
        if self.meta != self.begin_meta {
            let meta = Arc::new(Node::Meta(self.meta.clone()));
            self.overlay.insert(META_PAGE, meta);
        }
        let encode = |(page_no, node): (u64, Arc<Node>)| {
            let image = Arc::new(node.encode());
            Changed {
                page_no,
                image,
                node,
            }
        };
        self.overlay.into_iter().map(encode).collect()
    }
}

impl PageSource for Txn<'_> {
    fn node(&mut self, page_no: u64) -> Result<Arc<Node>, StorageError> {
        match self.overlay.get(&page_no) {
            Some(node) => Ok(node.clone()),
            None => Ok(self.store.node(page_no)?.0),
        }
    }

    fn meta(&mut self) -> Result<Meta, StorageError> {
        Ok(self.meta.clone())
    }
}
