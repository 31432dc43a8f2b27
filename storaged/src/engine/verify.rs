//! Verify: every page's checksum and the tree's invariants, naming each bad page.
//!
//! Invariants: page 0 is the meta page; every page below `page_count` is claimed exactly once,
//! by the tree (interior, leaf, overflow) or by the free list; keys strictly increase within a
//! node and lie within the separators of the path to it; overflow chains hold exactly the
//! length their cell records; the free list has no cycle and holds only free pages.
//!
//! Online, it checks a snapshot while writers go on (DESIGN §8): the images of the pages dirty
//! when it starts, over the data file, which only a checkpoint writes and which checkpoints
//! leave alone until the verify ends.

use crate::engine::buffer::{Image, PageStore};
use crate::engine::engine::Engine;
use crate::engine::error::{Error, OpenError, StorageError, VerifyError};
use crate::engine::io::{IoBackend, ReadOnly, StdFs};
use crate::engine::layout;
use crate::engine::open::lock_dir_shared;
use crate::engine::page::{Cell, Meta, Node, OVERFLOW_CAPACITY, Value};
use crate::engine::recovery;
use crate::engine::refusal::{Position, Refusal};
use crate::engine::sync::lock;
use crate::engine::txn::META_PAGE;
use crate::engine::types::{EngineOptions, RecoveryMode};
use crate::engine::wal::scan::EndKind;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, MutexGuard, TryLockError};

/// The reason verify gives a page no structure claims: wasted space, nothing unreadable.
pub const LEAKED_PAGE: &str = "page is neither in the tree nor on the free list (leaked)";

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

/// The store as of one instant: the images of the pages dirty then (images are replaced
/// whole, never changed in place) over the data file, which only a checkpoint writes.
struct Snapshot<'a> {
    store: &'a PageStore,
    dirty: HashMap<u64, Image>,
}

impl Snapshot<'_> {
    /// A page as of the snapshot, decoded: from memory if it was dirty (newer than the data
    /// file), otherwise from the data file with its checksum checked.
    fn node(&self, page: u64) -> Result<Node, StorageError> {
        match self.dirty.get(&page) {
            Some(image) => Node::decode(image, page),
            None => {
                let (image, _) = self.store.read_from_disk(page)?;
                Node::decode(&image, page)
            }
        }
    }
}

/// Asked between two steps of a scan whether to go on.
type Pace<'a> = &'a dyn Fn() -> Result<(), VerifyError>;

struct Verifier<'a> {
    snapshot: &'a Snapshot<'a>,
    pace: Pace<'a>,
    /// Pages read between two questions to `pace`.
    step: u64,
    loads: u64,
    /// Why the scan ended early; what it found is then discarded.
    stopped: Option<VerifyError>,
    report: VerifyReport,
    bad: BTreeMap<u64, String>,
    claims: Vec<Option<Claim>>,
}

const MAX_DEPTH: usize = 32;

/// Pages read between two checks of the stop condition and of the checkpoint bounds: 8 MiB,
/// a few milliseconds of reading.
const VERIFY_STEP_PAGES: u64 = 1024;

/// A verify gives way once dirty pages or WAL bytes since the checkpoint reach this many times
/// what triggers a checkpoint, so holding checkpoints off costs at most about one more buffer
/// pool of memory and one more trigger's worth of log.
const OVERDUE_FACTOR: usize = 2;

impl<'a> Verifier<'a> {
    fn run(
        snapshot: &'a Snapshot<'a>,
        step: u64,
        pace: Pace<'a>,
    ) -> Result<VerifyReport, VerifyError> {
        let mut v = Verifier {
            snapshot,
            pace,
            step: step.max(1),
            loads: 0,
            stopped: None,
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
        if let Some(stopped) = v.stopped.take() {
            return Err(stopped);
        }
        v.report.bad_pages = v
            .bad
            .into_iter()
            .map(|(page, reason)| BadPage { page, reason })
            .collect();
        Ok(v.report)
    }

    /// Reads a page of the snapshot, first asking `pace` if a step has passed; `None` once the
    /// scan has stopped.
    fn load(&mut self, page: u64) -> Option<Result<Node, StorageError>> {
        if self.stopped.is_none() && self.loads > 0 && self.loads.is_multiple_of(self.step) {
            self.stopped = (self.pace)().err();
        }
        if self.stopped.is_some() {
            return None;
        }
        self.loads += 1;
        match self.snapshot.node(page) {
            // The engine latched meanwhile: not damage of this page, and nothing read from
            // here on counts.
            Err(StorageError::PreviousIo) => {
                self.stopped = Some(StorageError::PreviousIo.into());
                None
            }
            loaded => Some(loaded),
        }
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

    fn node(&mut self, page: u64) -> Option<Node> {
        let loaded = self.load(page)?;
        loaded.map_err(|e| self.fail(page, e)).ok()
    }

    fn meta(&mut self) -> Option<Meta> {
        match self.node(META_PAGE)? {
            Node::Meta(meta) => {
                self.report.page_count = meta.page_count;
                self.claims = vec![None; meta.page_count as usize];
                Some(meta)
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
            let Some(loaded) = self.load(page) else {
                return;
            };
            self.report.pages_checked += 1;
            if let Err(e) = loaded {
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
        match self.node(page).as_ref() {
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
            match self.node(page).as_ref() {
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
            match self.node(page).as_ref() {
                Some(Node::Free(f)) => page = f.next,
                Some(_) => return self.mark_bad(page, "free list points at a used page"),
                None => return,
            }
        }
    }

    fn find_unclaimed(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        let unclaimed: Vec<u64> = (1..self.claims.len() as u64)
            .filter(|&p| self.claims[p as usize].is_none())
            .collect();
        for page in unclaimed {
            self.mark_bad(page, LEAKED_PAGE);
        }
    }
}

impl Engine {
    /// Checks every page and the tree's invariants as they were when it started; writers go
    /// on meanwhile. See [`Engine::verify_until`].
    pub fn verify(&self) -> Result<VerifyReport, VerifyError> {
        self.verify_until(&|| false)
    }

    /// Verifies a snapshot taken when it starts (under the tree lock, for as long as copying
    /// the dirty pages' handles takes), holding checkpoints off until it ends; writers commit
    /// meanwhile. At most one verify runs at a time: another gets
    /// [`VerifyError::AlreadyRunning`] at once. Every few milliseconds of reading it asks
    /// `stop`, and ends with [`VerifyError::Stopped`] once that says true; it ends with
    /// [`VerifyError::CheckpointDue`] once writes since it started make a checkpoint overdue.
    pub fn verify_until(&self, stop: &dyn Fn() -> bool) -> Result<VerifyReport, VerifyError> {
        self.verify_in_steps(VERIFY_STEP_PAGES, stop)
    }

    fn verify_in_steps(
        &self,
        step: u64,
        stop: &dyn Fn() -> bool,
    ) -> Result<VerifyReport, VerifyError> {
        self.check_open()?;
        let _only = self.verify_slot()?;
        // Held to the end: no checkpoint writes the data file under the snapshot's clean pages.
        let _no_checkpoint = lock(&self.checkpoint_busy);
        let snapshot = self.snapshot();
        let pace = || self.go_on(stop);
        let report = Verifier::run(&snapshot, step, &pace)?;
        // After a latch reads fail with `PreviousIo`: what the scan found then is no report.
        self.check_open()?;
        Ok(report)
    }

    fn verify_slot(&self) -> Result<MutexGuard<'_, ()>, VerifyError> {
        match self.verifying.try_lock() {
            Ok(slot) => Ok(slot),
            // A verify that panicked left nothing behind but the flag.
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner()),
            Err(TryLockError::WouldBlock) => Err(VerifyError::AlreadyRunning),
        }
    }

    /// The dirty pages' images now: under the tree lock, so every commit is in or out whole.
    fn snapshot(&self) -> Snapshot<'_> {
        let _tree = self.tree.read().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            store: &self.store,
            dirty: self.store.dirty_images(),
        }
    }

    /// Between two steps: whether the scan may go on.
    fn go_on(&self, stop: &dyn Fn() -> bool) -> Result<(), VerifyError> {
        self.check_open()?;
        if stop() {
            return Err(VerifyError::Stopped);
        }
        if self.checkpoint_overdue() {
            return Err(VerifyError::CheckpointDue);
        }
        Ok(())
    }

    /// Whether writes since the last checkpoint are past twice what triggers one.
    fn checkpoint_overdue(&self) -> bool {
        let redo = lock(&self.control).redo_lsn;
        let wal = self.wal.tail().saturating_sub(redo);
        let wal_bound = self
            .opts
            .checkpoint_wal_bytes
            .saturating_mul(OVERDUE_FACTOR as u64);
        wal >= wal_bound || self.store.over_budget_by(OVERDUE_FACTOR)
    }
}

/// What an offline verify found in the log: what recovery would do with it. Nothing is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogFinding {
    /// The log ends cleanly; `records` valid records after the redo point, ending at `end_lsn`.
    Clean { records: u64, end_lsn: u64 },
    /// Recovery (the default `torn-tail` mode) would cut `bytes` at `at`: a damaged record and
    /// `records_after` records valid on their own after it, all written after the last durable
    /// end the control file recorded, as a crash leaves them (damage there looks the same).
    WouldCut {
        at: Position,
        bytes: u64,
        records_after: u64,
    },
    /// Recovery would refuse to open the store: the log is damaged where no crash can damage it.
    WouldRefuse(Box<Refusal>),
}

/// The result of `verify_offline`: the log, the control file, and the pages as recovery would
/// leave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineVerify {
    pub log: LogFinding,
    /// A damaged control slot recovery would pass over.
    pub control_warning: Option<String>,
    /// The data file with the valid log replayed over it in memory.
    pub pages: VerifyReport,
}

impl fmt::Display for OfflineVerify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(warning) = &self.control_warning {
            writeln!(f, "warning: {warning}")?;
        }
        match &self.log {
            LogFinding::Clean { records, end_lsn } => writeln!(
                f,
                "log: clean, {records} records after the redo point, ending at {end_lsn:#x}"
            )?,
            LogFinding::WouldCut {
                at,
                bytes,
                records_after,
            } => writeln!(
                f,
                "log: recovery would cut a torn tail of {bytes} bytes at {at} (from the first \
                 position that is not a valid record to the last nonzero byte; {records_after} \
                 valid records among them), written after the last recorded durable end: a \
                 crash leaves such a tail, and damage to the newest commits looks the same. \
                 verify changed nothing: starting the daemon or `photondb-storaged recover \
                 --mode torn-tail` cuts it into quarantine/"
            )?,
            LogFinding::WouldRefuse(refusal) => {
                writeln!(f, "log: damaged; recovery would refuse to open the store:")?;
                writeln!(f, "{refusal}")?;
            }
        }
        write!(
            f,
            "pages (the data file with the valid log replayed): {}",
            self.pages
        )
    }
}

/// Checks a store no process has open, changing nothing: what recovery would find in the log
/// (and do: cut or refuse), and every page and the tree's invariants as recovery would leave
/// them, read from the data file with the valid log replayed in memory. Runs on a read-only
/// backend, holding the store's lock shared (a daemon cannot start meanwhile).
pub fn verify_offline(dir: &Path) -> Result<OfflineVerify, OpenError> {
    let io = ReadOnly(StdFs);
    if !io.exists(&layout::control(dir))? {
        return Err(OpenError::NotAStore(dir.to_path_buf()));
    }
    let _lock = lock_dir_shared(dir)?;
    let plan = match recovery::plan(&io, dir, RecoveryMode::TornTail) {
        Ok(plan) => plan,
        // Neither control slot is valid: the log cannot be read from a redo point, but the
        // data file can still be checked as it is.
        Err(OpenError::Refused(refusal)) => {
            let data_file = io.open(&layout::data(dir), false)?;
            let pages = verify_pages(data_file, HashMap::new())?;
            return Ok(OfflineVerify {
                log: LogFinding::WouldRefuse(refusal),
                control_warning: None,
                pages,
            });
        }
        Err(other) => return Err(other),
    };
    let segment_size = plan.control.segment_size;
    let log = match (&plan.decision, &plan.end.kind) {
        (Err(refusal), _) => LogFinding::WouldRefuse(Box::new(refusal.clone())),
        (Ok(None), _) => LogFinding::Clean {
            records: plan.end.records,
            end_lsn: plan.end.resume,
        },
        (Ok(Some(_)), &EndKind::TornTail { at, len, records }) => LogFinding::WouldCut {
            at: Position::new(at, segment_size),
            bytes: len,
            records_after: records,
        },
        // The default mode cuts nothing else (point-in-time and salvage are never asked here).
        (Ok(Some((_, at, _))), _) => LogFinding::WouldCut {
            at: Position::new(*at, segment_size),
            bytes: 0,
            records_after: 0,
        },
    };
    let dirty = plan
        .replay
        .images()
        .map(|(page, image)| (page, Arc::new(image.to_vec())))
        .collect();
    let pages = verify_pages(plan.data_file.clone(), dirty)?;
    Ok(OfflineVerify {
        log,
        control_warning: plan.control_warning,
        pages,
    })
}

/// Verifies the data file with `dirty` (replayed images) over it, as a snapshot is verified.
fn verify_pages(
    data_file: Arc<dyn crate::engine::io::IoFile>,
    dirty: HashMap<u64, Image>,
) -> Result<VerifyReport, OpenError> {
    let store = PageStore::new(data_file, EngineOptions::default().buffer_pool_bytes);
    let snapshot = Snapshot {
        store: &store,
        dirty,
    };
    Verifier::run(&snapshot, VERIFY_STEP_PAGES, &|| Ok(())).map_err(|e| match e {
        VerifyError::Engine(Error::Storage(s)) => OpenError::Storage(s),
        other => OpenError::Storage(StorageError::corrupted(None, other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use crate::engine::clock::ManualClock;
    use crate::engine::io::SimFs;
    use crate::engine::{Condition, Engine, EngineOptions, VerifyError};
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    fn engine(opts: EngineOptions) -> Arc<Engine> {
        let io = Arc::new(SimFs::new());
        let (engine, _) = Engine::open_with(io, Path::new("/db"), opts).unwrap();
        engine.create_database("d").unwrap();
        engine.create_table("d", "t").unwrap();
        Arc::new(engine)
    }

    fn put(e: &Engine, key: &str, len: usize) {
        e.put("d", "t", key, &vec![b'v'; len], Condition::Any)
            .unwrap();
    }

    /// Inline documents and overflow chains, some only on disk (checkpointed) and some changed
    /// since (dirty in memory), so a snapshot holds both kinds.
    fn fill(e: &Engine) {
        for i in 0..300 {
            put(
                e,
                &format!("k{i:04}"),
                if i % 10 == 0 { 20_000 } else { 900 },
            );
        }
        e.checkpoint().unwrap();
        for i in 300..400 {
            put(e, &format!("k{i:04}"), 900);
        }
    }

    /// Runs `f` on its own thread; fails (instead of hanging) unless it returns within 30 s.
    fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the call returned (and did not panic) while a verify was running")
    }

    /// Writers commit while a verify is mid-walk, changing the structure it walks (leaves
    /// rewritten and split, chains freed, freed pages reused), and it still reports exactly
    /// the store it started on, clean; the checkpoint it held off runs after it.
    #[test]
    fn writers_commit_during_a_verify_and_it_reports_its_snapshot_clean() {
        let clock = ManualClock::default();
        let opts = EngineOptions {
            clock: Arc::new(clock.clone()),
            ..EngineOptions::default()
        };
        let e = engine(opts);
        fill(&e);
        let before = e.verify().unwrap();
        assert!(before.is_clean(), "{before}");
        let checkpoints = e.stats().checkpoints;
        // Past the checksum pass (one step per page), halfway through the tree.
        let mid_walk = (before.page_count + before.tree_pages / 2) as usize;
        let steps = AtomicUsize::new(0);
        let hook = || {
            if steps.fetch_add(1, Ordering::Relaxed) == mid_walk {
                let (w, clock) = (e.clone(), clock.clone());
                finishes(move || {
                    for i in (0..400).step_by(2) {
                        let key = format!("k{i:04}");
                        w.delete("d", "t", &key, Condition::Any).unwrap();
                    }
                    for i in 400..700 {
                        put(
                            &w,
                            &format!("k{i:04}"),
                            if i % 7 == 0 { 30_000 } else { 900 },
                        );
                    }
                    clock.advance(Duration::from_secs(3600));
                    w.maybe_checkpoint();
                    assert_eq!(
                        w.stats().checkpoints,
                        checkpoints,
                        "checkpointed mid-verify"
                    );
                });
            }
            false
        };
        let during = e.verify_in_steps(1, &hook).unwrap();
        assert!(
            steps.load(Ordering::Relaxed) > mid_walk,
            "the writes ran mid-scan"
        );
        assert!(during.is_clean(), "{during}");
        assert_eq!(
            during, before,
            "the verify saw the store as it was when it started"
        );
        e.maybe_checkpoint();
        assert_eq!(
            e.stats().checkpoints,
            checkpoints + 1,
            "the due checkpoint runs after"
        );
        let after = e.verify().unwrap();
        assert!(after.is_clean(), "{after}");
        assert_ne!(after.cells, before.cells, "the writes changed the store");
    }

    /// While one verify runs, a second is refused at once instead of queueing behind it; the
    /// next one after it runs.
    #[test]
    fn a_second_verify_while_one_runs_is_refused() {
        let e = engine(EngineOptions::default());
        fill(&e);
        let steps = AtomicUsize::new(0);
        let hook = || {
            if steps.fetch_add(1, Ordering::Relaxed) == 0 {
                let second = e.clone();
                let refused = finishes(move || second.verify());
                assert!(
                    matches!(refused, Err(VerifyError::AlreadyRunning)),
                    "{refused:?}"
                );
            }
            false
        };
        assert!(e.verify_in_steps(1, &hook).unwrap().is_clean());
        assert!(steps.load(Ordering::Relaxed) > 0);
        assert!(e.verify().unwrap().is_clean());
    }

    /// Once `stop` says so, the scan ends at the next step and lets go of the verify slot and
    /// of the checkpoints it held off.
    #[test]
    fn a_stopped_verify_ends_at_the_next_step_and_lets_go() {
        let e = engine(EngineOptions::default());
        fill(&e);
        let steps = AtomicUsize::new(0);
        let stop = || steps.fetch_add(1, Ordering::Relaxed) >= 3;
        let stopped = e.verify_in_steps(1, &stop);
        assert!(matches!(stopped, Err(VerifyError::Stopped)), "{stopped:?}");
        assert_eq!(steps.load(Ordering::Relaxed), 4, "no step after the stop");
        let c = e.clone();
        finishes(move || c.checkpoint().unwrap());
        assert!(e.verify().unwrap().is_clean());
    }

    /// Writes that outgrow the pool while checkpoints are held off make the verify give way;
    /// the overdue checkpoint then runs and the store verifies clean.
    #[test]
    fn a_verify_gives_way_when_writes_make_a_checkpoint_overdue() {
        // A pool of 16 pages: a 400 kB document alone dirties about 50.
        let opts = EngineOptions {
            buffer_pool_bytes: 16 * crate::engine::page::PAGE_SIZE,
            ..EngineOptions::default()
        };
        let e = engine(opts);
        fill(&e);
        let steps = AtomicUsize::new(0);
        let hook = || {
            if steps.fetch_add(1, Ordering::Relaxed) == 0 {
                let w = e.clone();
                finishes(move || put(&w, "big", 400_000));
            }
            false
        };
        let gave_way = e.verify_in_steps(1, &hook);
        assert!(
            matches!(gave_way, Err(VerifyError::CheckpointDue)),
            "{gave_way:?}"
        );
        let checkpoints = e.stats().checkpoints;
        e.maybe_checkpoint();
        assert_eq!(e.stats().checkpoints, checkpoints + 1);
        assert!(e.verify().unwrap().is_clean());
    }
}
