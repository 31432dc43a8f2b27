//! What lives in a page: where a page sits in the tree and which part of the key space (the
//! catalog, which tables) it holds, for the log line that reports it damaged; and a read of
//! the whole catalog, which the daemon runs once at start.
//!
//! Locating a page reads only interior pages (and one leaf, to learn the tree's height: every
//! leaf is at the same depth, since the tree grows only at the root), through the page store:
//! the interior page whose children include the page gives it the key range `[lo, hi)` of its
//! separators, and keys are `table_id u32 BE ++ key`, so the range names table ids. A page that
//! fails to read is skipped. Names come from at most one scan of the catalog (its table and
//! pending-purge entries, a page of cells at a time); when that scan fails (the damaged page is
//! a catalog page) the tables are named by id. It runs when damage is seen, never per request.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use crate::engine::btree;
use crate::engine::engine::Engine;
use crate::engine::error::{Error, StorageError};
use crate::engine::page::{Cell, Interior, Meta, Node, Value};
use crate::engine::txn::{META_PAGE, PageSource, ReadView};

/// Tables a description names at most; the rest are counted ("and N more").
pub const LOCATE_MAX_NAMES: usize = 4;

/// Deeper than any real tree of 8 KiB pages; a longer path means a cycle.
const MAX_DEPTH: usize = 32;

/// Children tried, at each level, to find a readable one on the way down to a leaf.
const HEIGHT_TRIES: usize = 3;

/// Catalog cells read at a time (names, and the start-up probe).
const CATALOG_PAGE: usize = 1024;

/// Table id 0, the catalog: every catalog key starts with these bytes.
const CATALOG: &[u8] = &[0, 0, 0, 0];
/// `0 ++ "t\0"`: a table's name (`db ++ "\0" ++ table`) and, as its value, its id (u32 LE).
const TABLES: &[u8] = &[0, 0, 0, 0, b't', 0];
/// `0 ++ "g\0"`: a dropped table still being purged (its id, u32 BE).
const PENDING: &[u8] = &[0, 0, 0, 0, b'g', 0];

/// What lives in a page, as far as the readable part of the tree tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageOwner {
    /// Page 0: the root's address, the free list and the page count; every read starts here.
    Meta,
    /// A page of the tree: the root (`root`, whose range is every key) or a page under an
    /// interior page, with what the key range that page's separators give it can hold.
    Tree { root: bool, holds: Holds },
    /// Not found from the readable part of the tree: why, in words.
    NotFound(String),
}

/// What a key range of the tree can hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    /// Catalog entries (table id 0).
    pub catalog: bool,
    /// The first tables (by id, at most [`LOCATE_MAX_NAMES`]) whose keys the range can hold:
    /// `db/table`, `id N (dropped)` for a dropped table still being purged, or `id N` when the
    /// catalog could not be read.
    pub tables: Vec<String>,
    /// Tables in the range past those in `tables`.
    pub more_tables: u64,
    /// The catalog could not be read, so `tables` are the ids handed out in the range.
    pub names_unread: bool,
}

impl PageOwner {
    /// Whether the page holds catalog entries (the root always can).
    pub fn holds_catalog(&self) -> bool {
        matches!(self, PageOwner::Tree { holds, .. } if holds.catalog)
    }
}

impl fmt::Display for PageOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageOwner::Meta => f.write_str("the meta page: the whole store"),
            PageOwner::Tree { root: true, holds } if holds.names_unread => {
                f.write_str("the root: everything")
            }
            PageOwner::Tree { root: true, holds } => write!(f, "the root: everything, {holds}"),
            PageOwner::Tree { root: false, holds } => write!(f, "holding {holds}"),
            PageOwner::NotFound(why) => f.write_str(why),
        }
    }
}

impl fmt::Display for Holds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed = self.tables.len() as u64 + self.more_tables;
        if listed == 0 {
            let none = if self.catalog {
                "the catalog"
            } else {
                "keys of no table in the catalog"
            };
            return f.write_str(none);
        }
        if self.catalog {
            f.write_str("the catalog and ")?;
        }
        f.write_str(if listed == 1 { "table " } else { "tables " })?;
        f.write_str(&self.tables.join(", "))?;
        if self.more_tables > 0 {
            write!(f, " and {} more", self.more_tables)?;
        }
        Ok(())
    }
}

impl Engine {
    /// What lives in page `page_no`: the meta page, the root, a page holding the catalog or
    /// which tables, or why it could not be located. Reads interior pages and at most one scan
    /// of the catalog (bounded work, for when damage is seen; see the module comment). Never
    /// fails: what it cannot read it says.
    pub fn describe_page(&self, page_no: u64) -> PageOwner {
        if page_no == META_PAGE {
            return PageOwner::Meta;
        }
        let described = self.read(|v| Ok(describe(v, page_no)));
        described.unwrap_or_else(|e| PageOwner::NotFound(format!("not located: {e}")))
    }

    /// Reads every catalog entry (databases, tables, pending purges), a page of cells at a
    /// time, and returns how many there are: a damaged catalog page (or an interior page on
    /// the way to one) fails it with `Corrupted { page }`. storaged runs it once at start.
    pub fn probe_catalog(&self) -> Result<u64, Error> {
        let mut after: Option<Vec<u8>> = None;
        let mut entries = 0u64;
        loop {
            let from = after.take();
            let cells = self.read(|v| Ok(btree::page(v, CATALOG, from, CATALOG_PAGE)?))?;
            entries += cells.len().min(CATALOG_PAGE) as u64;
            if cells.len() <= CATALOG_PAGE {
                return Ok(entries);
            }
            after = Some(cells[CATALOG_PAGE - 1].key.clone());
        }
    }
}

fn describe(v: &mut ReadView<'_>, page_no: u64) -> PageOwner {
    let Ok(meta) = v.meta() else {
        return PageOwner::NotFound("not located: the meta page is unreadable".into());
    };
    let (root, lo, hi) = match place(v, page_no, &meta) {
        Place::Root => (true, None, None),
        Place::Under { lo, hi } => (false, lo, hi),
        Place::Lost(why) => return PageOwner::NotFound(why),
    };
    let holds = holds(v, lo.as_deref(), hi.as_deref(), &meta);
    PageOwner::Tree { root, holds }
}

/// A key range `[lo, hi)`; `None` is open.
type KeyRange = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Where a page sits in the tree.
enum Place {
    Root,
    /// A child of an interior page, whose separators give it `[lo, hi)`.
    Under {
        lo: Option<Vec<u8>>,
        hi: Option<Vec<u8>>,
    },
    Lost(String),
}

/// Finds the interior page whose children include `page_no`, level by level from the root,
/// reading only interior pages (below the parents of the leaves nothing is read).
fn place(v: &mut ReadView<'_>, page_no: u64, meta: &Meta) -> Place {
    if page_no >= meta.page_count {
        return Place::Lost(format!(
            "beyond the end of the store ({} pages)",
            meta.page_count
        ));
    }
    if page_no == meta.root {
        return Place::Root;
    }
    let leaves_at = height(v, meta.root);
    let mut level: Vec<(u64, KeyRange)> = vec![(meta.root, (None, None))];
    let mut seen = HashSet::new();
    let mut unreadable = 0u64;
    for depth in 0..MAX_DEPTH {
        // The children of this level are leaves: only their numbers are looked at.
        let parents_of_leaves = leaves_at == Some(depth + 1);
        let mut next = Vec::new();
        for (page, (lo, hi)) in level {
            if !seen.insert(page) {
                continue;
            }
            let Ok(node) = v.node(page) else {
                unreadable += 1;
                continue;
            };
            // A leaf (the height was unknown): the rest of this level are leaves too.
            let Node::Interior(n) = &*node else {
                break;
            };
            if let Some(i) = n.children.iter().position(|&c| c == page_no) {
                let (lo, hi) = child_range(n, i, lo.as_deref(), hi.as_deref());
                return Place::Under { lo, hi };
            }
            if !parents_of_leaves {
                for (i, &child) in n.children.iter().enumerate() {
                    next.push((child, child_range(n, i, lo.as_deref(), hi.as_deref())));
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    if unreadable > 0 {
        Place::Lost(format!(
            "not reachable from the readable part of the tree ({unreadable} interior pages \
             could not be read)"
        ))
    } else {
        Place::Lost(
            "not in the tree: a free page, a page of a large document's overflow chain, or a \
             leaked page"
                .into(),
        )
    }
}

/// Child `i` holds keys `k` with `keys[i-1] <= k < keys[i]`, within its parent's range.
fn child_range(n: &Interior, i: usize, lo: Option<&[u8]>, hi: Option<&[u8]>) -> KeyRange {
    let lo = if i == 0 {
        lo
    } else {
        n.keys.get(i - 1).map(Vec::as_slice)
    };
    let hi = n.keys.get(i).map(Vec::as_slice).or(hi);
    (lo.map(<[u8]>::to_vec), hi.map(<[u8]>::to_vec))
}

/// How many levels below the root the leaves are, down the first readable child of each
/// interior page (a few tries a level); reads one leaf. `None` if no way down could be read.
fn height(v: &mut ReadView<'_>, root: u64) -> Option<usize> {
    let mut page = root;
    for depth in 0..MAX_DEPTH {
        let node = v.node(page).ok()?;
        match &*node {
            Node::Leaf(_) => return Some(depth),
            Node::Interior(n) => {
                let mut readable = n.children.iter().take(HEIGHT_TRIES).copied();
                page = readable.find(|&child| v.node(child).is_ok())?;
            }
            _ => return None,
        }
    }
    None
}

/// The table id of a key: its first four bytes (a shorter key padded with zeros, which sorts
/// before every key of that id).
fn id_of(key: &[u8]) -> u32 {
    let mut id = [0u8; 4];
    let n = key.len().min(4);
    id[..n].copy_from_slice(&key[..n]);
    u32::from_be_bytes(id)
}

/// The table ids `first..=last` whose keys `[lo, hi)` can hold; `None` if none.
fn ids_in(lo: Option<&[u8]>, hi: Option<&[u8]>) -> Option<(u32, u32)> {
    let first = lo.map_or(0, id_of);
    let last = match hi {
        None => u32::MAX,
        // Below `id ++ k` (k not empty) lie some of `id`'s keys; below `id` itself, none.
        Some(hi) if hi.len() > 4 => id_of(hi),
        Some(hi) => id_of(hi).checked_sub(1)?,
    };
    (first <= last).then_some((first, last))
}

/// What `[lo, hi)` can hold: the catalog (id 0) and the tables with ids in it, named from the
/// catalog, or by id (those handed out, below `next_table_id`) when it cannot be read.
fn holds(v: &mut ReadView<'_>, lo: Option<&[u8]>, hi: Option<&[u8]>, meta: &Meta) -> Holds {
    let Some((first, last)) = ids_in(lo, hi) else {
        return Holds::default();
    };
    let catalog = first == 0;
    let first = first.max(1);
    if first > last {
        return Holds {
            catalog,
            ..Holds::default()
        };
    }
    match table_names(v, first, last) {
        Ok((named, count)) => Holds {
            catalog,
            more_tables: count.saturating_sub(named.len() as u64),
            tables: named.into_values().collect(),
            names_unread: false,
        },
        Err(_) => {
            let last = last.min(meta.next_table_id.saturating_sub(1));
            let count = if first > last {
                0
            } else {
                u64::from(last - first) + 1
            };
            let ids = (first..=last).take(LOCATE_MAX_NAMES);
            let tables: Vec<String> = ids.map(|id| format!("id {id}")).collect();
            Holds {
                catalog,
                more_tables: count.saturating_sub(tables.len() as u64),
                tables,
                names_unread: true,
            }
        }
    }
}

/// The tables with ids in `first..=last` that the catalog names (`db/table`) or holds as being
/// purged (`id N (dropped)`): the first [`LOCATE_MAX_NAMES`] by id, and how many in all. One
/// pass over the catalog's table and pending entries, a page of cells at a time.
fn table_names(
    v: &mut ReadView<'_>,
    first: u32,
    last: u32,
) -> Result<(BTreeMap<u32, String>, u64), StorageError> {
    let mut named = BTreeMap::new();
    let mut count = 0u64;
    for prefix in [TABLES, PENDING] {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let cells = btree::page(v, prefix, after.take(), CATALOG_PAGE)?;
            for cell in cells.iter().take(CATALOG_PAGE) {
                let Some((id, label)) = catalog_entry(prefix, cell) else {
                    continue;
                };
                if (first..=last).contains(&id) {
                    count += 1;
                    named.insert(id, label);
                    if named.len() > LOCATE_MAX_NAMES {
                        named.pop_last();
                    }
                }
            }
            if cells.len() <= CATALOG_PAGE {
                break;
            }
            after = Some(cells[CATALOG_PAGE - 1].key.clone());
        }
    }
    Ok((named, count))
}

/// A table entry's id and `db/table`, or a pending entry's id and `id N (dropped)`.
fn catalog_entry(prefix: &[u8], cell: &Cell) -> Option<(u32, String)> {
    let rest = cell.key.get(prefix.len()..)?;
    if prefix == PENDING {
        let id = u32::from_be_bytes(rest.try_into().ok()?);
        return Some((id, format!("id {id} (dropped)")));
    }
    let Value::Inline(value) = &cell.value else {
        return None;
    };
    let id = u32::from_le_bytes(value.as_slice().try_into().ok()?);
    Some((id, String::from_utf8_lossy(rest).replacen('\0', "/", 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::io::SimFs;
    use crate::engine::{BatchOp, Condition, EngineOptions};
    use std::path::Path;
    use std::sync::Arc;

    const DATA: &str = "/db/pages.db";

    fn open(fs: &SimFs) -> Engine {
        let opened = Engine::open_with(
            Arc::new(fs.clone()),
            Path::new("/db"),
            EngineOptions::default(),
        );
        opened.unwrap().0
    }

    fn db_name(i: usize) -> String {
        format!("db-{i:03}-{}", "x".repeat(54))
    }

    /// A catalog of several leaves (400 databases with long names, then `app` with tables `a`
    /// and `b`) and two tables of about twenty leaves each: the root is an interior page.
    fn store(fs: &SimFs) -> Engine {
        let e = open(fs);
        for i in 0..400 {
            e.create_database(&db_name(i)).unwrap();
        }
        e.create_database("app").unwrap();
        for table in ["a", "b"] {
            e.create_table("app", table).unwrap();
        }
        for table in ["a", "b"] {
            let ops = (0..600)
                .map(|i| BatchOp::Put {
                    key: format!("k{i:04}"),
                    value: vec![b'v'; 200],
                    condition: Condition::Any,
                })
                .collect();
            e.batch("app", table, ops).unwrap();
        }
        e
    }

    fn root(e: &Engine) -> u64 {
        e.read(|v| Ok(v.meta()?.root)).unwrap()
    }

    /// The leaf whose range holds `key`.
    fn leaf_of(e: &Engine, key: &[u8]) -> u64 {
        let mut page = root(e);
        loop {
            let (node, _) = e.store.node(page).unwrap();
            match &*node {
                Node::Interior(n) => page = n.children[n.child_index(key)],
                _ => return page,
            }
        }
    }

    fn doc(table_id: u32, key: &str) -> Vec<u8> {
        [&table_id.to_be_bytes()[..], key.as_bytes()].concat()
    }

    fn catalog_key(kind: &[u8], name: &str) -> Vec<u8> {
        [CATALOG, kind, name.as_bytes()].concat()
    }

    fn holdings(owner: &PageOwner) -> &Holds {
        match owner {
            PageOwner::Tree { root: false, holds } => holds,
            other => panic!("expected a page under the root, got {other:?}"),
        }
    }

    #[test]
    fn a_page_is_described_by_what_its_parent_gives_it() {
        let fs = SimFs::new();
        let e = store(&fs);
        let (root_node, _) = e.store.node(root(&e)).unwrap();
        assert!(matches!(&*root_node, Node::Interior(_)), "{root_node:?}");

        assert_eq!(e.describe_page(0), PageOwner::Meta);
        assert_eq!(
            e.describe_page(0).to_string(),
            "the meta page: the whole store"
        );

        let root_owner = e.describe_page(root(&e));
        let PageOwner::Tree {
            root: true,
            holds: all,
        } = &root_owner
        else {
            panic!("{root_owner:?}");
        };
        assert!(all.catalog && !all.names_unread, "{root_owner:?}");
        assert_eq!(all.tables, ["app/a", "app/b"]);
        assert_eq!(
            root_owner.to_string(),
            "the root: everything, the catalog and tables app/a, app/b"
        );

        // A leaf in the middle of table a (id 1): that table only, by name.
        let a = e.describe_page(leaf_of(&e, &doc(1, "k0300")));
        assert_eq!(
            holdings(&a),
            &Holds {
                catalog: false,
                tables: vec!["app/a".into()],
                more_tables: 0,
                names_unread: false,
            }
        );
        assert_eq!(a.to_string(), "holding table app/a");
        assert!(!a.holds_catalog());

        // A leaf among the databases' entries: the catalog only.
        let catalog_leaf = leaf_of(&e, &catalog_key(b"d\0", &db_name(150)));
        let c = e.describe_page(catalog_leaf);
        assert_eq!(
            holdings(&c),
            &Holds {
                catalog: true,
                ..Holds::default()
            }
        );
        assert_eq!(c.to_string(), "holding the catalog");
        assert!(c.holds_catalog());

        let past = e.describe_page(1 << 40);
        assert!(matches!(&past, PageOwner::NotFound(why) if why.contains("beyond the end")));
        assert_eq!(e.probe_catalog().unwrap(), 400 + 1 + 2);
    }

    /// With the catalog's table entries on a damaged page, the probe names that page, and the
    /// tables are described by id (the catalog cannot name them); opening did not fail.
    #[test]
    fn a_damaged_catalog_page_fails_the_probe_and_tables_are_named_by_id() {
        let fs = SimFs::new();
        let e = store(&fs);
        let table_entries = leaf_of(&e, &catalog_key(b"t\0", "app\0a"));
        let middle_of_a = leaf_of(&e, &doc(1, "k0300"));
        e.checkpoint().unwrap();
        drop(e);
        fs.corrupt(Path::new(DATA), table_entries * 8192 + 3000, &[0x42]);
        let e = open(&fs);

        match e.probe_catalog() {
            Err(Error::Storage(StorageError::Corrupted { page: Some(p), .. })) => {
                assert_eq!(p, table_entries);
            }
            other => panic!("expected the damaged catalog page, got {other:?}"),
        }
        let damaged = e.describe_page(table_entries);
        let h = holdings(&damaged);
        assert!(h.catalog && h.names_unread, "{damaged:?}");
        assert_eq!(h.tables, ["id 1"], "{damaged:?}");
        assert!(damaged.to_string().starts_with("holding the catalog"));

        let a = e.describe_page(middle_of_a);
        assert_eq!(
            holdings(&a),
            &Holds {
                catalog: false,
                tables: vec!["id 1".into()],
                more_tables: 0,
                names_unread: true,
            }
        );
    }

    #[test]
    fn key_ranges_map_to_table_ids() {
        let k = |id: u32, rest: &[u8]| -> Vec<u8> { [&id.to_be_bytes()[..], rest].concat() };
        let (a1, b1, x3, y3, e5, e0) = (
            k(1, b"a"),
            k(1, b""),
            k(3, b"x"),
            k(3, b"y"),
            k(5, b""),
            k(0, b""),
        );
        let short: &[u8] = &[0, 0, 1];
        assert_eq!(ids_in(None, None), Some((0, u32::MAX)));
        assert_eq!(ids_in(None, Some(a1.as_slice())), Some((0, 1)));
        assert_eq!(ids_in(None, Some(b1.as_slice())), Some((0, 0)));
        assert_eq!(
            ids_in(Some(x3.as_slice()), Some(y3.as_slice())),
            Some((3, 3))
        );
        assert_eq!(
            ids_in(Some(x3.as_slice()), Some(e5.as_slice())),
            Some((3, 4))
        );
        assert_eq!(ids_in(None, Some(short)), Some((0, 0xFF)));
        assert_eq!(ids_in(None, Some(e0.as_slice())), None);
    }
}
