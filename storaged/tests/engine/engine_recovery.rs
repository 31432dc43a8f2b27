//! Recovery tells a torn tail from corruption, cuts only what the mode allows, and quarantines
//! what it cuts; a corrupted page is reported, never returned as data.

use photondb_storaged::engine::{
    Condition, CutKind, Engine, EngineOptions, Error, IoBackend, List, OpenError, Problem,
    RecoveryMode, SimFs, StorageError, inspect_with,
};
use std::path::Path;
use std::sync::Arc;

pub(crate) const DIR: &str = "/db";
pub(crate) const SEGMENT: &str = "/db/wal/0000000000000000.wal";

/// Small segments, the given recovery mode (shared with `engine_log_loss`).
pub(crate) fn opts(mode: RecoveryMode) -> EngineOptions {
    EngineOptions {
        wal_segment_size: 256 << 10,
        recovery: mode,
        ..EngineOptions::default()
    }
}

pub(crate) fn open(fs: &SimFs, mode: RecoveryMode) -> Result<Engine, OpenError> {
    let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
    Engine::open_with(io, Path::new(DIR), opts(mode)).map(|(e, _)| e)
}

/// A store with a checkpoint after setup, then `n` acknowledged puts: returns their LSNs and
/// the log end.
fn small_wal(n: usize) -> (SimFs, Vec<u64>, u64) {
    let fs = SimFs::new();
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    e.checkpoint().unwrap();
    let lsns = (0..n)
        .map(|i| {
            e.put("d", "t", &format!("k{i}"), &[i as u8; 40], Condition::Any)
                .unwrap()
        })
        .collect();
    let end = e.stats().durable_lsn;
    (fs, lsns, end)
}

fn present(e: &Engine, i: usize) -> Option<u64> {
    e.get("d", "t", &format!("k{i}"))
        .unwrap()
        .map(|d| d.version)
}

#[test]
fn truncating_the_wal_at_every_byte_keeps_exactly_the_whole_records() {
    let (fs, lsns, end) = small_wal(3);
    let mut ends: Vec<u64> = lsns[1..].to_vec();
    ends.push(end);
    let original = fs.read_file(Path::new(SEGMENT)).unwrap();
    for cut in lsns[0]..=end {
        let crashed = fs.crash(0);
        crashed.corrupt(Path::new(SEGMENT), cut, &vec![0u8; (end - cut) as usize]);
        let e = open(&crashed, RecoveryMode::TornTail)
            .unwrap_or_else(|err| panic!("cut at {cut}: {err}"));
        for (i, (&lsn, &rec_end)) in lsns.iter().zip(&ends).enumerate() {
            // A record survives when the cut left all of its bytes as they were (its last
            // bytes may be zeros already: padding, or zeros in a page image).
            let untouched = original[cut.min(rec_end) as usize..rec_end as usize]
                .iter()
                .all(|&b| b == 0);
            let expected = untouched.then_some(lsn);
            assert_eq!(present(&e, i), expected, "cut at {cut}, record {i}");
        }
        assert!(e.verify().unwrap().is_clean());
    }
}

#[test]
fn a_zeroed_tail_sector_is_a_torn_tail() {
    let (fs, mut lsns, _) = small_wal(29);
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    lsns.push(
        e.put("d", "t", "k29", &[9u8; 3000], Condition::Any)
            .unwrap(),
    );
    let end = e.stats().durable_lsn;
    drop(e);
    let crashed = fs.crash(0);
    let sector = lsns[29].div_ceil(512) * 512;
    assert!(
        sector + 512 < end,
        "the last record spans past a sector boundary"
    );
    crashed.corrupt(Path::new(SEGMENT), sector, &[0u8; 512]);
    let strict = open(&crashed, RecoveryMode::Strict);
    assert!(matches!(strict, Err(OpenError::Refused(r)) if r.problem == Problem::TornTail));
    let io: Arc<dyn IoBackend> = Arc::new(crashed.clone());
    let (e, report) = Engine::open_with(io, Path::new(DIR), opts(RecoveryMode::TornTail)).unwrap();
    let cut = report.cut.expect("a cut");
    assert_eq!(cut.kind, CutKind::TornTail);
    assert!(
        crashed.read_file(&cut.quarantined[0]).is_some(),
        "cut bytes were quarantined"
    );
    assert_eq!(present(&e, 29), None);
    assert_eq!(present(&e, 28), Some(lsns[28]));
    // The cut is permanent: the next open finds a clean log, and new writes follow the cut.
    e.put("d", "t", "after", b"x", Condition::Any).unwrap();
    drop(e);
    let e = open(&crashed, RecoveryMode::Strict).unwrap();
    assert!(e.get("d", "t", "after").unwrap().is_some());
}

#[test]
fn a_bad_record_followed_by_valid_ones_is_corruption() {
    let (fs, lsns, _) = small_wal(5);
    let crashed = fs.crash(0);
    crashed.corrupt(Path::new(SEGMENT), lsns[2] + 40, &[0xEE]);
    for mode in [RecoveryMode::TornTail, RecoveryMode::Strict] {
        match open(&crashed, mode) {
            Err(OpenError::Refused(r)) => {
                assert_eq!(
                    (r.problem, r.at.as_ref().map(|p| p.lsn)),
                    (Problem::Corruption, Some(lsns[2]))
                );
                let text = r.to_string();
                assert!(
                    text.contains("salvage") && text.lines().count() > 3,
                    "{text}"
                );
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    let e = open(&crashed, RecoveryMode::Salvage).unwrap();
    assert_eq!(
        (present(&e, 1), present(&e, 2), present(&e, 4)),
        (Some(lsns[1]), None, None)
    );
    assert!(e.verify().unwrap().is_clean());
}

#[test]
fn point_in_time_recovery_stops_at_the_target() {
    let (fs, lsns, _) = small_wal(6);
    let crashed = fs.crash(0);
    let e = open(&crashed, RecoveryMode::PointInTime { until_lsn: lsns[3] }).unwrap();
    assert_eq!((present(&e, 3), present(&e, 4)), (Some(lsns[3]), None));
}

#[test]
fn a_foreign_segment_is_corruption() {
    let (fs, _, _) = small_wal(2);
    let crashed = fs.crash(0);
    crashed.corrupt(Path::new(SEGMENT), 24, &[0x55; 16]);
    assert!(matches!(
        open(&crashed, RecoveryMode::TornTail),
        Err(OpenError::Refused(_))
    ));
}

/// Finds the page of the data file holding `needle`.
fn page_holding(fs: &SimFs, needle: &[u8]) -> u64 {
    let data = fs.read_file(Path::new("/db/pages.db")).unwrap();
    let at = data
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle on disk");
    (at / 8192) as u64
}

#[test]
fn a_corrupted_page_is_an_error_on_read_and_named_by_verify() {
    let fs = SimFs::new();
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    e.create_table("d", "t").unwrap();
    for i in 0..400 {
        e.put(
            "d",
            "t",
            &format!("key-{i:04}"),
            &[1u8; 100],
            Condition::Any,
        )
        .unwrap();
    }
    e.checkpoint().unwrap();
    drop(e);
    let page = page_holding(&fs, b"key-0399");
    fs.corrupt(Path::new("/db/pages.db"), page * 8192 + 3000, &[0x42]);
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    match e.get("d", "t", "key-0399") {
        Err(Error::Storage(StorageError::Corrupted { page: Some(p), .. })) => assert_eq!(p, page),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert!(
        e.get("d", "t", "key-0000").unwrap().is_some(),
        "other pages still read"
    );
    let report = e.verify().unwrap();
    assert_eq!(
        report.bad_pages.iter().map(|b| b.page).collect::<Vec<_>>(),
        vec![page],
        "{report}"
    );
    assert!(e.stats().corrupt_pages_seen >= 1);
}

#[test]
fn inspect_describes_the_files_without_changing_them() {
    let (fs, lsns, _) = small_wal(3);
    let before = fs.read_file(Path::new(SEGMENT));
    let report = inspect_with(&fs, Path::new(DIR)).unwrap();
    assert_eq!(report.wal_records, 3);
    assert_eq!(report.wal_last_lsn, lsns[2]);
    let summaries: Vec<(&str, bool)> = report
        .recent_records
        .iter()
        .map(|r| (r.summary.as_str(), r.checkpointed))
        .collect();
    // The records before the checkpoint are still in the segment: listed, marked.
    assert_eq!(
        summaries,
        [
            ("create database d", true),
            ("create table d/t", true),
            ("put d/t/k0", false),
            ("put d/t/k1", false),
            ("put d/t/k2", false)
        ]
    );
    assert!(
        report
            .to_string()
            .contains("create table d/t (2 pages, checkpointed)"),
        "{report}"
    );
    assert!(report.control_slots.iter().any(|s| s.is_ok()));
    assert!(report.unreadable_pages.is_empty());
    assert!(report.to_string().contains("clean end"), "{report}");
    // The printed report lists the records with the LSNs a point-in-time target takes.
    let listed = format!("{:#x} put d/t/k1", lsns[1]);
    assert!(report.to_string().contains(&listed), "{report}");
    assert_eq!(fs.read_file(Path::new(SEGMENT)), before);
}

#[test]
fn salvage_starts_even_when_the_active_segment_header_is_bad() {
    let (fs, _, _) = small_wal(3);
    let crashed = fs.crash(0);
    crashed.corrupt(Path::new(SEGMENT), 4, &[0x00; 4]);
    assert!(matches!(
        open(&crashed, RecoveryMode::TornTail),
        Err(OpenError::Refused(_))
    ));
    let e = open(&crashed, RecoveryMode::Salvage).unwrap();
    assert_eq!(
        present(&e, 0),
        None,
        "the records after the checkpoint were in that segment"
    );
    e.put("d", "t", "after", b"x", Condition::Any).unwrap();
    drop(e);
    let e = open(&crashed, RecoveryMode::Strict).unwrap();
    assert!(e.get("d", "t", "after").unwrap().is_some());
    assert!(e.verify().unwrap().is_clean());
}

fn lose_control_file(fs: &SimFs) {
    fs.remove(Path::new("/db/control")).unwrap();
}

#[test]
fn a_lost_control_file_is_refused_not_reinitialised() {
    // Only the first segment and nothing checkpointed: the records are the evidence.
    let (fs, _, _) = small_wal(3);
    let crashed = fs.crash(0);
    lose_control_file(&crashed);
    let refused = open(&crashed, RecoveryMode::TornTail);
    assert!(
        matches!(&refused, Err(OpenError::Storage(StorageError::Corrupted { detail, .. }))
            if detail.contains("control file is missing")),
        "{:?}",
        refused.err()
    );
    assert_eq!(
        crashed.read_file(Path::new(SEGMENT)),
        fs.crash(0).read_file(Path::new(SEGMENT)),
        "the refusal must leave the log as it was"
    );

    // Checkpointed pages in the data file are evidence too, even with the log rewound.
    let (fs, _, _) = small_wal(3);
    open(&fs, RecoveryMode::TornTail)
        .unwrap()
        .checkpoint()
        .unwrap();
    let crashed = fs.crash(0);
    lose_control_file(&crashed);
    let len = |fs: &SimFs| fs.read_file(Path::new("/db/pages.db")).unwrap().len();
    let before = len(&crashed);
    assert!(open(&crashed, RecoveryMode::TornTail).is_err());
    assert_eq!(len(&crashed), before);
}

#[test]
fn a_store_cut_off_during_initialisation_is_initialised_again() {
    let fs = SimFs::new();
    drop(open(&fs, RecoveryMode::TornTail).unwrap());
    // What a crash just before the control file's rename leaves: the empty tree, segment 0.
    lose_control_file(&fs);
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    e.create_database("d").unwrap();
    let list = List {
        start_after: None,
        limit: 10,
    };
    assert_eq!(e.list_databases(&list).unwrap().names, ["d"]);
}

/// A checkpoint cut off between writing its pages and its control slot: the data file holds
/// changes the control file does not know of. Point-in-time recovery to before them would mix
/// old and new pages, so it is refused; a target after them recovers.
#[test]
fn point_in_time_before_pages_a_cut_off_checkpoint_wrote_is_refused() {
    let (fs, lsns, _) = small_wal(4);
    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    let control = Path::new("/db/control");
    let before = fs.read_file(control).unwrap();
    e.checkpoint().unwrap();
    drop(e);
    // The control file as it was before that checkpoint: what a crash before its slot leaves.
    fs.corrupt(control, 0, &before);
    let crashed = fs.crash(0);
    let refused = open(&crashed, RecoveryMode::PointInTime { until_lsn: lsns[1] });
    assert!(
        matches!(&refused, Err(OpenError::InvalidOptions(m)) if m.contains("cut off")),
        "{:?}",
        refused.err()
    );
    let e = open(&crashed, RecoveryMode::PointInTime { until_lsn: lsns[3] }).unwrap();
    assert_eq!(present(&e, 3), Some(lsns[3]));
    assert!(e.verify().unwrap().is_clean());
}

/// Salvage after the same cut-off checkpoint, with damage before the pages it wrote: the store
/// opens (salvage always does) and its report warns that it may mix two points in time; a
/// salvage without such pages does not warn.
#[test]
fn salvage_warns_when_the_data_file_holds_pages_from_after_its_cut() {
    let salvage = |fs: &SimFs| {
        let io: Arc<dyn IoBackend> = Arc::new(fs.clone());
        Engine::open_with(io, Path::new(DIR), opts(RecoveryMode::Salvage))
            .map(|(_, report)| report)
            .unwrap()
    };
    let (fs, lsns, _) = small_wal(4);
    let damaged = fs.crash(0);
    damaged.corrupt(Path::new(SEGMENT), lsns[2] + 40, &[0xEE]);
    let cut = salvage(&damaged).cut.expect("salvage cut");
    assert_eq!((cut.kind, cut.newer_page), (CutKind::Corruption, None));

    let e = open(&fs, RecoveryMode::TornTail).unwrap();
    let control = Path::new("/db/control");
    let before = fs.read_file(control).unwrap();
    e.checkpoint().unwrap();
    drop(e);
    fs.corrupt(control, 0, &before);
    let damaged = fs.crash(0);
    damaged.corrupt(Path::new(SEGMENT), lsns[2] + 40, &[0xEE]);
    let report = salvage(&damaged);
    let cut = report.cut.as_ref().expect("salvage cut");
    let (_, lsn) = cut.newer_page.expect("a warning about newer pages");
    assert!(lsn >= lsns[2], "{report}");
    assert!(
        report.to_string().contains("may mix two points in time"),
        "{report}"
    );
}
