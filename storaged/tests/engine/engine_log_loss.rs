//! Lost or damaged log bytes are never passed off as a clean end or a torn tail when the store
//! recorded them as durable: the durable end in the control file (checkpoints, periodic marks,
//! a clean stop) turns them into a refusal naming the range, segment and offset; a cut-short
//! segment is refused where it stops; a damaged control slot is a warning; and the offline
//! verify reports what recovery would do without changing a byte.

use photondb_storaged::engine::{
    Condition, CutKind, Engine, IoBackend, List, LogFinding, OpenError, Problem, RecoveryMode,
    SimFs, SlotProblem, inspect_with, verify_offline,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine_recovery::{DIR, SEGMENT, open, opts};

const SEGMENT_NAME: &str = "0000000000000000.wal";

fn put(e: &Engine, i: usize) -> u64 {
    e.put("d", "t", &format!("k{i}"), &[i as u8; 40], Condition::Any)
        .unwrap()
}

fn present(e: &Engine, i: usize) -> bool {
    e.get("d", "t", &format!("k{i}")).unwrap().is_some()
}

/// A table, then `marked` puts whose end is recorded as durable, then `unmarked` more: the
/// LSNs of all puts, the recorded durable end, and the log end. The engine is dropped without
/// a checkpoint, as a crash leaves it.
fn log_with_mark(marked: usize, unmarked: usize) -> (SimFs, Vec<u64>, u64, u64) {
    let fs = SimFs::new();
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    e.checkpoint().unwrap();
    let mut lsns: Vec<u64> = (0..marked).map(|i| put(&e, i)).collect();
    assert!(e.mark_durable().unwrap(), "the mark wrote nothing");
    let mark = e.stats().durable_lsn;
    assert!(
        !e.mark_durable().unwrap(),
        "a mark that did not move wrote again"
    );
    lsns.extend((marked..marked + unmarked).map(|i| put(&e, i)));
    let end = e.stats().durable_lsn;
    (fs.crash(0), lsns, mark, end)
}

#[test]
fn a_log_zeroed_below_the_recorded_durable_end_is_refused_naming_the_range() {
    let (fs, lsns, mark, end) = log_with_mark(10, 5);
    // From a record boundary to the end: nothing in the log itself shows a loss.
    fs.corrupt(
        Path::new(SEGMENT),
        lsns[4],
        &vec![0u8; (end - lsns[4]) as usize],
    );
    for mode in [RecoveryMode::TornTail, RecoveryMode::Strict] {
        let Err(OpenError::Refused(r)) = open(&fs, mode) else {
            panic!("{mode}: a log that lost acknowledged commits opened");
        };
        assert_eq!(r.problem, Problem::Corruption);
        let at = r.at.clone().expect("a position");
        assert_eq!(
            (at.lsn, at.segment.as_str(), at.offset),
            (lsns[4], SEGMENT_NAME, lsns[4])
        );
        assert_eq!((r.valid_records, r.last_valid_lsn), (4, lsns[3]));
        let range = format!("[{:#x}, {mark:#x})", lsns[4]);
        assert!(r.reason.contains(&range), "{mode}: {}", r.reason);
        let text = r.to_string();
        let position = format!("segment {SEGMENT_NAME}, byte offset {}", lsns[4]);
        assert!(text.contains(&position), "{text}");
    }
    // Salvage keeps the prefix and says what it is: a cut at corruption, not a torn tail. The
    // durable end is then lowered to the cut, so the default mode opens it afterwards.
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let (e, report) = Engine::open_with(io, Path::new(DIR), opts(RecoveryMode::Salvage)).unwrap();
    let cut = report.cut.expect("salvage reports the loss");
    assert_eq!((cut.kind, cut.at_lsn), (CutKind::Corruption, lsns[4]));
    drop(e);
    let e = open(&fs.crash(1), RecoveryMode::TornTail).unwrap();
    assert!((0..4).all(|i| present(&e, i)));
    assert!((4..15).all(|i| !present(&e, i)));
}

#[test]
fn commits_after_the_last_mark_are_the_documented_limit() {
    // Zeroed from a record boundary above the mark: indistinguishable from a crash before those
    // records were written (DESIGN §6 says so); the store opens with the records below.
    let (fs, lsns, mark, end) = log_with_mark(10, 5);
    assert!(lsns[12] >= mark);
    fs.corrupt(
        Path::new(SEGMENT),
        lsns[12],
        &vec![0u8; (end - lsns[12]) as usize],
    );
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    assert!((0..12).all(|i| present(&e, i)));
    assert!(!present(&e, 12));
}

#[test]
fn a_record_damaged_below_the_mark_is_corruption_not_a_torn_tail() {
    // The last record below the mark, damaged, with nothing valid after it: without the mark
    // recovery would cut it as a torn tail (and lose an acknowledged commit).
    let (fs, lsns, _, _) = log_with_mark(10, 0);
    fs.corrupt(Path::new(SEGMENT), lsns[9] + 40, &[0xEE]);
    let Err(OpenError::Refused(r)) = open(&fs, RecoveryMode::TornTail) else {
        panic!("a damaged acknowledged record was cut as a torn tail");
    };
    assert_eq!(r.problem, Problem::Corruption);
    assert_eq!(r.at.map(|p| p.lsn), Some(lsns[9]));
}

#[test]
fn after_a_checkpoint_at_stop_a_zeroed_log_loses_nothing() {
    // What the daemon does on SIGTERM: a checkpoint, which puts everything in the data file
    // and records the end of the log. Zeroing the log after it cannot lose a document.
    let fs = SimFs::new();
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    let lsns: Vec<u64> = (0..20).map(|i| put(&e, i)).collect();
    e.checkpoint().unwrap();
    let end = e.stats().durable_lsn;
    drop(e);
    let fs = fs.crash(0);
    fs.corrupt(
        Path::new(SEGMENT),
        lsns[0],
        &vec![0u8; (end - lsns[0]) as usize],
    );
    let e = open(&fs, RecoveryMode::Strict).unwrap();
    assert!((0..20).all(|i| present(&e, i)));
    assert!(e.verify().unwrap().is_clean());
}

#[test]
fn a_cut_short_segment_is_refused_where_it_stops() {
    let (fs, lsns, _, _) = log_with_mark(10, 0);
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let file = io.open(Path::new(SEGMENT), false).unwrap();
    file.set_len(lsns[6] + 3).unwrap();
    file.sync_data().unwrap();
    let Err(OpenError::Refused(r)) = open(&fs, RecoveryMode::TornTail) else {
        panic!("a cut-short segment opened");
    };
    assert_eq!(r.problem, Problem::Corruption);
    let at = r.at.clone().expect("a position");
    assert_eq!((at.segment.as_str(), at.offset), (SEGMENT_NAME, lsns[6]));
    assert_eq!((r.valid_records, r.last_valid_lsn), (6, lsns[5]));
    assert!(r.reason.contains("cut short"), "{}", r.reason);
    assert!(
        r.reason
            .contains(&format!("{} of {}", lsns[6] + 3, 256 << 10)),
        "{}",
        r.reason
    );
    // The refusal's advice works: salvage keeps the six records and makes the segment whole,
    // and the store then opens in the default mode.
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let (e, report) = Engine::open_with(io, Path::new(DIR), opts(RecoveryMode::Salvage)).unwrap();
    assert_eq!(
        report.cut.map(|c| (c.kind, c.at_lsn)),
        Some((CutKind::Corruption, lsns[6]))
    );
    drop(e);
    let segment = fs.read_file(Path::new(SEGMENT)).unwrap();
    assert_eq!(segment.len(), 256 << 10);
    let e = open(&fs.crash(2), RecoveryMode::TornTail).unwrap();
    assert!((0..6).all(|i| present(&e, i)));
    assert!(!present(&e, 6));
}

#[test]
fn point_in_time_recovery_below_the_mark_opens_again_after_its_cut() {
    let (fs, lsns, _, _) = log_with_mark(10, 0);
    let pit = RecoveryMode::PointInTime { until_lsn: lsns[4] };
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let (e, report) = Engine::open_with(io, Path::new(DIR), opts(pit)).unwrap();
    assert_eq!(report.cut.map(|c| c.kind), Some(CutKind::PointInTime));
    drop(e);
    // The records after the target were valid and are in quarantine/: the durable end was
    // lowered with the cut, so neither the default mode nor the same point-in-time run again
    // takes the shorter log for damage.
    let fs = fs.crash(3);
    drop(open(&fs, pit).unwrap());
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    assert!((0..5).all(|i| present(&e, i)));
    assert!(!present(&e, 5));
}

fn newest_slot(fs: &SimFs) -> usize {
    let report = inspect_with(fs, Path::new(DIR)).unwrap();
    let seq = |i: usize| report.control_slots[i].as_ref().map_or(0, |s| s.sequence);
    usize::from(seq(1) > seq(0))
}

#[test]
fn control_slots_say_empty_or_damaged_and_a_skipped_slot_is_a_warning() {
    let fs = SimFs::new();
    drop(open(&fs, RecoveryMode::TornTail).unwrap());
    // A new store has written one slot; the other is empty, which is no warning.
    let report = inspect_with(&fs, Path::new(DIR)).unwrap();
    assert!(
        report.control_slots.contains(&Err(SlotProblem::Empty)),
        "{report}"
    );
    assert!(
        report.to_string().contains("empty (never written)"),
        "{report}"
    );
    assert_eq!(report.control_warning, None);

    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    e.checkpoint().unwrap();
    e.checkpoint().unwrap();
    drop(e);
    let newest = newest_slot(&fs);
    fs.corrupt(Path::new("/db/control"), newest as u64 * 512 + 30, &[0x5A]);
    let report = inspect_with(&fs, Path::new(DIR)).unwrap();
    assert!(
        matches!(&report.control_slots[newest], Err(SlotProblem::Damaged(_))),
        "{report}"
    );
    let warning = format!("warning: control slot {newest} is damaged");
    assert!(report.to_string().contains(&warning), "{report}");
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    let (e, recovery) =
        Engine::open_with(io, Path::new(DIR), opts(RecoveryMode::TornTail)).unwrap();
    let said = recovery
        .control_warning
        .clone()
        .expect("the skipped slot went unmentioned");
    assert!(
        said.starts_with(&format!("control slot {newest} is damaged")),
        "{said}"
    );
    assert!(recovery.to_string().contains(&said), "{recovery}");
    let listed = e
        .list_databases(&List {
            start_after: None,
            limit: 10,
        })
        .unwrap();
    assert_eq!(listed.names, ["d"]);
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A store on the real filesystem with `n` puts (the last one's LSN returned), marked as
/// durable or not, closed without a checkpoint.
fn real_store(dir: &Path, n: usize, mark: bool) -> u64 {
    let (e, _) = Engine::open(dir, opts(RecoveryMode::TornTail)).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    let last = (0..n).map(|i| put(&e, i)).last().unwrap();
    if mark {
        e.mark_durable().unwrap();
    }
    last
}

fn flip(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_offline_reports_what_recovery_would_do_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let segment = |d: &Path| d.join("wal").join(SEGMENT_NAME);

    // A flipped bit in the last flush, above the recorded durable end: recovery would cut it as
    // a torn tail. Verify says so (with where and how much) and leaves every byte alone.
    let dir = tmp.path().join("torn");
    let last = real_store(&dir, 12, false);
    flip(&segment(&dir), last + 44);
    let before = snapshot(&dir);
    let found = verify_offline(&dir).unwrap();
    let LogFinding::WouldCut { at, bytes, .. } = &found.log else {
        panic!("expected a torn tail recovery would cut: {found}");
    };
    assert_eq!((at.lsn, at.segment.as_str()), (last, SEGMENT_NAME));
    assert!(*bytes > 0);
    assert!(found.pages.is_clean(), "{found}");
    assert!(
        found.to_string().contains("would cut a torn tail"),
        "{found}"
    );
    assert_eq!(snapshot(&dir), before, "verify changed the store");

    // The same flip below the recorded durable end: the log is damaged, recovery would refuse.
    let dir = tmp.path().join("damaged");
    let last = real_store(&dir, 12, true);
    flip(&segment(&dir), last + 44);
    let before = snapshot(&dir);
    let found = verify_offline(&dir).unwrap();
    let LogFinding::WouldRefuse(refusal) = &found.log else {
        panic!("expected a refusal: {found}");
    };
    assert_eq!(refusal.at.as_ref().map(|p| p.lsn), Some(last));
    assert_eq!(snapshot(&dir), before, "verify changed the store");

    // A clean store: nothing to report, the pages as the log leaves them (nothing
    // checkpointed: every document is only in the log).
    let dir = tmp.path().join("clean");
    real_store(&dir, 12, true);
    let found = verify_offline(&dir).unwrap();
    assert!(
        matches!(found.log, LogFinding::Clean { records, .. } if records == 14),
        "{found}"
    );
    assert!(found.pages.is_clean() && found.pages.cells >= 12, "{found}");

    // A store a process has open is refused, not read mid-write.
    let (_open, _) = Engine::open(&dir, opts(RecoveryMode::TornTail)).unwrap();
    assert!(matches!(verify_offline(&dir), Err(OpenError::Locked(_))));
}
