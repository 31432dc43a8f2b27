//! Verify: every page's checksum and the tree's invariants, naming each bad page.
//!
//! Invariants: page 0 is the meta page; every page below `page_count` is claimed exactly once,
//! by the tree (interior, leaf, overflow) or by the free list; keys strictly increase within a
//! node and lie within the separators of the path to it; overflow chains hold exactly the
//! length their cell records; the free list has no cycle and holds only free pages.

use crate::engine::buffer::PageStore;
use crate::engine::engine::Engine;
use crate::engine::error::{Error, OpenError, StorageError};
use crate::engine::page::{Cell, Meta, Node, OVERFLOW_CAPACITY, Value};
use crate::engine::recovery::RecoveryReport;
use crate::engine::txn::META_PAGE;
use crate::engine::types::EngineOptions;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPage {
    pub page: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub pages_checked: u64,
    pub page_count: u64,
    pub tree_pages: u64,
    pub overflow_pages: u64,
    pub free_pages: u64,
    /// Cells in the tree: documents plus catalog entries.
    pub cells: u64,
    pub bad_pages: Vec<BadPage>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.bad_pages.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "checked {} of {} pages: {} tree, {} overflow, {} free; {} cells",
            self.pages_checked,
            self.page_count,
            self.tree_pages,
            self.overflow_pages,
            self.free_pages,
            self.cells
        )?;
        if self.is_clean() {
            return writeln!(f, "no problems found");
        }
        self.bad_pages
            .iter()
            .try_for_each(|b| writeln!(f, "bad page {}: {}", b.page, b.reason))
    }
}

#[derive(Clone, Copy)]
enum Claim {
    Tree,
    Overflow,
    Free,
}

struct Verifier<'a> {
    store: &'a PageStore,
    report: VerifyReport,
    bad: BTreeMap<u64, String>,
    claims: Vec<Option<Claim>>,
}

const MAX_DEPTH: usize = 32;

impl<'a> Verifier<'a> {
    fn run(store: &'a PageStore) -> VerifyReport {
        let mut v = Verifier {
            store,
            report: VerifyReport::default(),
            bad: BTreeMap::new(),
            claims: Vec::new(),
        };
        if let Some(meta) = v.meta() {
            v.check_all_pages(&meta);
            v.walk(meta.root, None, None, 0);
            v.walk_free_list(meta.free_head);
            v.find_unclaimed();
        }
        v.report.bad_pages = v
            .bad
            .into_iter()
            .map(|(page, reason)| BadPage { page, reason })
            .collect();
        v.report
    }

    fn mark_bad(&mut self, page: u64, reason: impl Into<String>) {
        self.bad.entry(page).or_insert_with(|| reason.into());
    }

    fn fail(&mut self, page: u64, e: StorageError) {
        let reason = match e {
            StorageError::Corrupted { detail, .. } => detail,
            other => other.to_string(),
        };
        self.mark_bad(page, reason);
    }

    fn node(&mut self, page: u64) -> Option<Arc<Node>> {
        let decoded = self.store.node(page).map(|(node, _)| node);
        decoded.map_err(|e| self.fail(page, e)).ok()
    }

    fn meta(&mut self) -> Option<Meta> {
        match &*self.node(META_PAGE)? {
            Node::Meta(meta) => {
                self.report.page_count = meta.page_count;
                self.claims = vec![None; meta.page_count as usize];
                Some(meta.clone())
            }
            _ => {
                self.mark_bad(META_PAGE, "page 0 is not the meta page");
                None
            }
        }
    }

    /// Checksums every page on disk; pages changed since the checkpoint are checked in memory.
    fn check_all_pages(&mut self, meta: &Meta) {
        for page in 0..meta.page_count {
            self.report.pages_checked += 1;
            let result = match self.store.peek(page) {
                Some((image, true)) => Node::decode(&image, page).map(|_| ()),
                _ => self
                    .store
                    .read_from_disk(page)
                    .and_then(|(image, _)| Node::decode(&image, page).map(|_| ())),
            };
            if let Err(e) = result {
                self.fail(page, e);
            }
        }
    }

    /// Claims a page for one owner; false (and a bad page) if it is out of range or taken.
    fn claim(&mut self, page: u64, owner: Claim) -> bool {
        let Some(slot) = self
            .claims
            .get_mut(page as usize)
            .filter(|_| page != META_PAGE)
        else {
            self.mark_bad(page, "referenced page is outside the data file");
            return false;
        };
        if slot.is_some() {
            self.mark_bad(
                page,
                "page is referenced twice (tree, overflow chains and free list overlap)",
            );
            return false;
        }
        *slot = Some(owner);
        true
    }

    fn walk(&mut self, page: u64, lo: Option<&[u8]>, hi: Option<&[u8]>, depth: usize) {
        if depth > MAX_DEPTH || !self.claim(page, Claim::Tree) {
            return;
        }
        self.report.tree_pages += 1;
        match self.node(page).as_deref() {
            Some(Node::Leaf(leaf)) => {
                let keys: Vec<&[u8]> = leaf.cells.iter().map(|c| c.key.as_slice()).collect();
                self.check_keys(page, &keys, lo, hi);
                self.report.cells += leaf.cells.len() as u64;
                leaf.cells.iter().for_each(|c| self.walk_overflow(page, c));
            }
            Some(Node::Interior(n)) => {
                let keys: Vec<&[u8]> = n.keys.iter().map(Vec::as_slice).collect();
                self.check_keys(page, &keys, lo, hi);
                for (i, &child) in n.children.iter().enumerate() {
                    let child_lo = if i == 0 { lo } else { Some(keys[i - 1]) };
                    let child_hi = keys.get(i).copied().or(hi);
                    self.walk(child, child_lo, child_hi, depth + 1);
                }
            }
            Some(other) => self.mark_bad(page, format!("tree points at a {:?} page", other.kind())),
            None => {}
        }
    }

    /// Keys strictly increase and lie in `[lo, hi)`.
    fn check_keys(&mut self, page: u64, keys: &[&[u8]], lo: Option<&[u8]>, hi: Option<&[u8]>) {
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            self.mark_bad(page, "keys are not in strictly increasing order");
        }
        let below = lo.is_some_and(|lo| keys.first().is_some_and(|k| *k < lo));
        let above = hi.is_some_and(|hi| keys.last().is_some_and(|k| *k >= hi));
        if below || above {
            self.mark_bad(page, "a key lies outside the separators of its parent");
        }
    }

    fn walk_overflow(&mut self, leaf: u64, cell: &Cell) {
        let Value::Overflow { head, len } = cell.value else {
            return;
        };
        let mut page = head;
        let mut total = 0usize;
        for _ in 0..(len as usize).div_ceil(OVERFLOW_CAPACITY) {
            if !self.claim(page, Claim::Overflow) {
                return;
            }
            self.report.overflow_pages += 1;
            match self.node(page).as_deref() {
                Some(Node::Overflow(o)) => {
                    total += o.data.len();
                    page = o.next;
                }
                Some(_) => {
                    return self.mark_bad(page, "overflow chain points at a non-overflow page");
                }
                None => return,
            }
        }
        if page != 0 || total != len as usize {
            self.mark_bad(
                leaf,
                format!("overflow chain from page {head} does not hold {len} bytes"),
            );
        }
    }

    fn walk_free_list(&mut self, mut page: u64) {
        while page != 0 {
            if !self.claim(page, Claim::Free) {
                return;
            }
            self.report.free_pages += 1;
            match self.node(page).as_deref() {
                Some(Node::Free(f)) => page = f.next,
                Some(_) => return self.mark_bad(page, "free list points at a used page"),
                None => return,
            }
        }
    }

    fn find_unclaimed(&mut self) {
        let unclaimed: Vec<u64> = (1..self.claims.len() as u64)
            .filter(|&p| self.claims[p as usize].is_none())
            .collect();
        for page in unclaimed {
            self.mark_bad(
                page,
                "page is neither in the tree nor on the free list (leaked)",
            );
        }
    }
}

impl Engine {
    /// Checks every page and the tree's invariants. Holds off writers while it runs.
    pub fn verify(&self) -> Result<VerifyReport, Error> {
        self.check_open()?;
        let _tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        Ok(Verifier::run(&self.store))
    }
}

/// Opens an existing store (normal torn-tail recovery first, whose report is returned: it
/// may have cut a torn tail) and verifies it.
pub fn verify_offline(dir: &Path) -> Result<(RecoveryReport, VerifyReport), OpenError> {
    let opts = EngineOptions {
        create_if_missing: false,
        ..EngineOptions::default()
    };
    let (engine, recovery) = Engine::open(dir, opts)?;
    let report = engine.verify().map_err(|e| match e {
        Error::Storage(s) => OpenError::Storage(s),
        other => OpenError::Storage(StorageError::corrupted(None, other.to_string())),
    })?;
    Ok((recovery, report))
}
