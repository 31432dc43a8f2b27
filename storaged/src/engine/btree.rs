//! The B+tree over composite keys: lookup, ordered scan, insert with splits, delete.
//!
//! Nodes are not merged when they become small; a node that becomes empty is removed from its
//! parent and freed, so dropping a table returns its pages to the free list.

use crate::engine::error::StorageError;
use crate::engine::page::{BODY_LEN, Cell, Interior, Leaf, Node};
use crate::engine::txn::{PageSource, Txn};
use std::sync::Arc;

/// Deeper than any real tree of 8 KiB pages; a longer path means a cycle.
const MAX_DEPTH: usize = 32;

fn not_a_tree_page(page_no: u64) -> StorageError {
    StorageError::corrupted(Some(page_no), "expected a B+tree page")
}

fn too_deep(page_no: u64) -> Result<(), StorageError> {
    Err(StorageError::corrupted(
        Some(page_no),
        "tree is deeper than possible (cycle?)",
    ))
}

pub(crate) fn get(src: &mut impl PageSource, key: &[u8]) -> Result<Option<Cell>, StorageError> {
    let mut page_no = src.meta()?.root;
    for _ in 0..MAX_DEPTH {
        match &*src.node(page_no)? {
            Node::Interior(n) => page_no = n.children[n.child_index(key)],
            Node::Leaf(leaf) => return Ok(leaf.search(key).ok().map(|i| (*leaf.cells[i]).clone())),
            _ => return Err(not_a_tree_page(page_no)),
        }
    }
    too_deep(page_no).map(|()| None)
}

/// Where a scan starts and what it may return.
pub(crate) struct Range<'a> {
    pub(crate) from: &'a [u8],
    pub(crate) inclusive: bool,
    pub(crate) prefix: &'a [u8],
    pub(crate) limit: usize,
}

impl Range<'_> {
    fn admits_start(&self, key: &[u8]) -> bool {
        if self.inclusive {
            key >= self.from
        } else {
            key > self.from
        }
    }
}

/// Cells in key order from `range.from` while keys carry `range.prefix`, at most `limit`.
pub(crate) fn scan(
    src: &mut impl PageSource,
    range: &Range<'_>,
) -> Result<Vec<Cell>, StorageError> {
    let mut out = Vec::new();
    if range.limit > 0 {
        let root = src.meta()?.root;
        walk(src, root, range, &mut out, 0)?;
    }
    Ok(out)
}

/// One page under `prefix`, for every paged read (documents, names): the cells strictly after
/// `after` (from the prefix's first key when `after` is `None` or sorts before the prefix), at
/// most `limit` of them plus one more if there is one, so the caller can tell whether another
/// page follows.
pub(crate) fn page(
    src: &mut impl PageSource,
    prefix: &[u8],
    after: Option<Vec<u8>>,
    limit: usize,
) -> Result<Vec<Cell>, StorageError> {
    let (from, inclusive) = match after {
        Some(after) if after.as_slice() >= prefix => (after, false),
        _ => (prefix.to_vec(), true),
    };
    let range = Range {
        from: &from,
        inclusive,
        prefix,
        limit: limit.saturating_add(1),
    };
    scan(src, &range)
}

/// Returns true once the scan is complete.
fn walk(
    src: &mut impl PageSource,
    page_no: u64,
    range: &Range<'_>,
    out: &mut Vec<Cell>,
    depth: usize,
) -> Result<bool, StorageError> {
    if depth > MAX_DEPTH {
        too_deep(page_no)?;
    }
    match &*src.node(page_no)? {
        Node::Leaf(leaf) => Ok(collect(leaf, range, out)),
        Node::Interior(n) => {
            for &child in &n.children[n.child_index(range.from)..] {
                if walk(src, child, range, out, depth + 1)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => Err(not_a_tree_page(page_no)),
    }
}

fn collect(leaf: &Leaf, range: &Range<'_>, out: &mut Vec<Cell>) -> bool {
    let start = leaf.cells.partition_point(|c| !range.admits_start(&c.key));
    for cell in &leaf.cells[start..] {
        if !cell.key.starts_with(range.prefix) {
            return true;
        }
        out.push((**cell).clone());
        if out.len() >= range.limit {
            return true;
        }
    }
    false
}

/// Inserts or replaces; returns the cell it replaced.
pub(crate) fn insert(txn: &mut Txn<'_>, cell: Cell) -> Result<Option<Cell>, StorageError> {
    let root = txn.meta.root;
    let (old, split) = insert_at(txn, root, cell, 0)?;
    if let Some((separator, right)) = split {
        let new_root = txn.alloc()?;
        let node = Interior {
            keys: vec![separator],
            children: vec![root, right],
        };
        txn.put(new_root, Node::Interior(node));
        txn.meta.root = new_root;
    }
    Ok(old)
}

type Split = Option<(Vec<u8>, u64)>;

fn insert_at(
    txn: &mut Txn<'_>,
    page_no: u64,
    cell: Cell,
    depth: usize,
) -> Result<(Option<Cell>, Split), StorageError> {
    if depth > MAX_DEPTH {
        too_deep(page_no)?;
    }
    let node = txn.node(page_no)?;
    if let Node::Interior(n) = &*node {
        // The parent changes only when its child splits: otherwise it is not copied.
        let idx = n.child_index(&cell.key);
        let (old, split) = insert_at(txn, n.children[idx], cell, depth + 1)?;
        let Some((separator, right)) = split else {
            return Ok((old, None));
        };
        let mut n = n.clone();
        n.keys.insert(idx, separator);
        n.children.insert(idx + 1, right);
        return Ok((old, store_interior(txn, page_no, n)?));
    }
    let Node::Leaf(mut leaf) = Arc::unwrap_or_clone(node) else {
        return Err(not_a_tree_page(page_no));
    };
    let cell = Arc::new(cell);
    let old = match leaf.search(&cell.key) {
        Ok(i) => Some(Arc::unwrap_or_clone(std::mem::replace(
            &mut leaf.cells[i],
            cell,
        ))),
        Err(i) => {
            leaf.cells.insert(i, cell);
            None
        }
    };
    Ok((old, store_leaf(txn, page_no, leaf)?))
}

/// Writes a leaf back, splitting it in two by size when it overflows the page.
fn store_leaf(txn: &mut Txn<'_>, page_no: u64, mut leaf: Leaf) -> Result<Split, StorageError> {
    if leaf.encoded_len() <= BODY_LEN {
        txn.put(page_no, Node::Leaf(leaf));
        return Ok(None);
    }
    let half = leaf.encoded_len() / 2;
    let mut size = 0;
    let mut mid = leaf.cells.iter().take_while(|c| {
        size += c.encoded_len();
        size < half
    });
    let mid = mid.by_ref().count().clamp(1, leaf.cells.len() - 1);
    let right = Leaf {
        cells: leaf.cells.split_off(mid),
    };
    let separator = right.cells[0].key.clone();
    let right_page = txn.alloc()?;
    txn.put(right_page, Node::Leaf(right));
    txn.put(page_no, Node::Leaf(leaf));
    Ok(Some((separator, right_page)))
}

fn store_interior(txn: &mut Txn<'_>, page_no: u64, mut n: Interior) -> Result<Split, StorageError> {
    if n.encoded_len() <= BODY_LEN {
        txn.put(page_no, Node::Interior(n));
        return Ok(None);
    }
    // By size, as leaves split: separators are whole keys (15 to 526 bytes an entry), so
    // halving the count can leave long separators grouped in one half that overflows a page.
    // `keys[mid]` moves up; the keys before it stay, the keys after it go right.
    let half = n.encoded_len() / 2;
    let mut size = Interior::EMPTY_LEN;
    let mid = n
        .keys
        .iter()
        .take_while(|k| {
            size += Interior::entry_len(k);
            size < half
        })
        .count()
        .clamp(1, n.keys.len().saturating_sub(2).max(1));
    let right_keys = n.keys.split_off(mid + 1);
    let separator = n.keys.pop().unwrap_or_default();
    let right = Interior {
        keys: right_keys,
        children: n.children.split_off(mid + 1),
    };
    if n.encoded_len() > BODY_LEN || right.encoded_len() > BODY_LEN {
        return Err(StorageError::corrupted(
            Some(page_no),
            "an interior node split into a half larger than a page",
        ));
    }
    let right_page = txn.alloc()?;
    txn.put(right_page, Node::Interior(right));
    txn.put(page_no, Node::Interior(n));
    Ok(Some((separator, right_page)))
}

/// Removes a key; returns the removed cell.
pub(crate) fn remove(txn: &mut Txn<'_>, key: &[u8]) -> Result<Option<Cell>, StorageError> {
    let root = txn.meta.root;
    let (old, empty) = remove_at(txn, root, key, 0)?;
    if empty {
        txn.put(root, Node::Leaf(Leaf::default()));
    }
    collapse_root(txn)?;
    Ok(old)
}

/// A root with a single child and no keys is replaced by that child.
fn collapse_root(txn: &mut Txn<'_>) -> Result<(), StorageError> {
    let root = txn.meta.root;
    if let Node::Interior(n) = &*txn.node(root)?
        && n.children.len() == 1
    {
        txn.meta.root = n.children[0];
        txn.free(root);
    }
    Ok(())
}

/// Returns the removed cell and whether the node is now empty.
fn remove_at(
    txn: &mut Txn<'_>,
    page_no: u64,
    key: &[u8],
    depth: usize,
) -> Result<(Option<Cell>, bool), StorageError> {
    if depth > MAX_DEPTH {
        too_deep(page_no)?;
    }
    let node = txn.node(page_no)?;
    if let Node::Interior(n) = &*node {
        // The parent changes only when its child becomes empty: otherwise it is not copied.
        let idx = n.child_index(key);
        let child = n.children[idx];
        let (old, child_empty) = remove_at(txn, child, key, depth + 1)?;
        if !child_empty {
            return Ok((old, false));
        }
        txn.free(child);
        let mut n = n.clone();
        n.children.remove(idx);
        if !n.keys.is_empty() {
            n.keys.remove(idx.saturating_sub(1));
        }
        let empty = n.children.is_empty();
        txn.put(page_no, Node::Interior(n));
        return Ok((old, empty));
    }
    let Node::Leaf(mut leaf) = Arc::unwrap_or_clone(node) else {
        return Err(not_a_tree_page(page_no));
    };
    let Ok(i) = leaf.search(key) else {
        return Ok((None, false));
    };
    let old = Arc::unwrap_or_clone(leaf.cells.remove(i));
    let empty = leaf.cells.is_empty();
    txn.put(page_no, Node::Leaf(leaf));
    Ok((Some(old), empty))
}
